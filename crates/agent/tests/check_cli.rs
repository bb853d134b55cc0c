//! `llmbasedos-agent --check`, as the package's check() runs it: every
//! shipped workflow after one `--check` (a shell glob), and a broken file
//! among them named with its line while the others are still reported.

use std::path::Path;
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llmbasedos-agent"))
}

fn shipped_workflows() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("config/workflows")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "expected several shipped workflows in {}",
        dir.display()
    );
    files
}

#[test]
fn check_takes_every_file_after_one_flag() {
    let files = shipped_workflows();
    let output = agent()
        .arg("--check")
        .args(&files)
        .output()
        .expect("run llmbasedos-agent");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("is valid").count(), files.len(), "{stdout}");
}

#[test]
fn a_broken_file_fails_the_check_and_the_others_are_still_reported() {
    let files = shipped_workflows();
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "id: broken\nsteps:\n  - id: a\n    nosuchkind: {}\n",
    )
    .expect("write");
    let output = agent()
        .arg("--check")
        .arg(&files[0])
        .arg(&broken)
        .output()
        .expect("run llmbasedos-agent");
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stdout.matches("is valid").count(), 1, "{stdout}");
    assert!(stderr.contains("broken.yaml"), "{stderr}");
}
