//! luca-shell as a person and a script use it: the real binary against a
//! real stack (`llmbasedos up` with the test server, in a temp dir).

mod golden;
mod llm;
mod scripts;
mod stack;
mod terminal;
