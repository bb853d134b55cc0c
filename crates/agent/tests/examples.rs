//! The shipped example workflows (`config/workflows/*.yaml`) are valid
//! against the shipped JSON Schema of the format and load in the engine;
//! the schema refuses what the engine refuses.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/workflows")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(agent::WORKFLOW_SCHEMA).expect("the schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

#[test]
fn every_example_workflow_matches_the_schema_and_loads() {
    let validator = schema();
    let templates = agent::template::Templates::new();
    let files = examples();
    assert!(files.len() >= 4, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let value: Value = yaml_serde::from_str(&text).expect("YAML");
        let problems: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(problems.is_empty(), "{}: {problems:?}", path.display());
        agent::load::parse(&text, &path.display().to_string(), &templates)
            .unwrap_or_else(|error| panic!("{error}"));
    }
}

#[test]
fn the_schema_refuses_an_unknown_step_kind_and_two_kinds() {
    let validator = schema();
    for bad in [
        "id: w\nsteps:\n  - id: a\n    frobnicate: {}\n",
        "id: w\nsteps:\n  - id: a\n    log: x\n    set: {a: 1}\n",
        "id: w\nsteps: []\n",
        "id: 'bad id'\nsteps:\n  - log: x\n",
    ] {
        let value: Value = yaml_serde::from_str(bad).expect("YAML");
        assert!(!validator.is_valid(&value), "{bad}");
        assert!(
            agent::load::parse(bad, "w.yaml", &agent::template::Templates::new()).is_err(),
            "{bad}"
        );
    }
}
