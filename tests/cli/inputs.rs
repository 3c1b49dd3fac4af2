//! `pairs`, and bad input to every reading command: a non-zero exit naming the file and line.

use super::*;

/// `gram pairs` on three models' outputs: every pair of different responses to a prompt, with
/// the responses' own models, dropping empty and repeated responses.
#[test]
fn pairs_builds_every_distinct_pair_with_its_models() {
    let dir = tempfile::tempdir().unwrap();
    let write = |model: &str, outputs: &[(&str, &str)]| {
        let path = dir.path().join(format!("{model}.jsonl"));
        let rows: Vec<Value> = outputs
            .iter()
            .map(|(p, r)| json!({"prompt": p, "response": r, "model": model}))
            .collect();
        write_jsonl(&path, &rows);
        path
    };
    let files = [
        write("m1", &[("Name a colour.", "Red."), ("Say hi.", "Hi!")]),
        write("m2", &[("Name a colour.", "Blue."), ("Say hi.", "Hi!")]), // repeated
        write("m3", &[("Name a colour.", "  "), ("Say hi.", "Hello.")]), // empty
    ];
    let out = dir.path().join("pairs.jsonl");
    let mut args: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    args.extend([Path::new("-o"), out.as_path()]);
    let (_, stderr) = run_ok(&["pairs"], &args);
    assert!(stderr.contains("6 outputs, 2 prompts"), "{stderr}");
    assert!(
        stderr.contains("1 empty and 1 repeated responses dropped"),
        "{stderr}"
    );
    let mut found: Vec<(String, String, String)> = read_jsonl(&out)
        .iter()
        .flat_map(|p| {
            let side = |r: &str, m: &str| (p[r].as_str().unwrap(), p[m].as_str().unwrap());
            let (a, b) = (side("response_a", "model_a"), side("response_b", "model_b"));
            // Each response is labelled with the model that wrote it.
            for (response, model) in [a, b] {
                let expected = match response {
                    "Red." | "Hi!" => "m1",
                    "Blue." => "m2",
                    "Hello." => "m3",
                    other => panic!("unexpected response {other:?}"),
                };
                assert_eq!(model, expected, "{p}");
            }
            let (x, y) = if a.0 < b.0 { (a.0, b.0) } else { (b.0, a.0) };
            [(
                p["prompt"].as_str().unwrap().to_string(),
                x.to_string(),
                y.to_string(),
            )]
        })
        .collect();
    found.sort();
    let expected = [
        ("Name a colour.", "Blue.", "Red."),
        ("Say hi.", "Hello.", "Hi!"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(p, a, b)| (p.to_string(), a.to_string(), b.to_string()))
        .collect();
    assert_eq!(found, expected);
}

// ---- pretrain, finetune --------------------------------------------------------------------

/// A file whose second line is cut off.
fn bad_file(dir: &Path, name: &str, good: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{good}\n{{\"prompt\": \"q\", \"chosen\n")).unwrap();
    path
}

fn assert_fails_naming(output: &Output, location: &str) {
    let (_, stderr) = texts(output);
    assert!(!output.status.success(), "succeeded on bad input");
    assert!(
        stderr.contains(location),
        "the error should name {location}:\n{stderr}"
    );
}

#[test]
fn pairs_rejects_a_bad_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_file(
        dir.path(),
        "outputs.jsonl",
        &json!({"prompt": "p", "response": "r", "model": "m"}),
    );
    let out = dir.path().join("pairs.jsonl");
    let output = run(&["pairs"], &[&bad, Path::new("-o"), &out]);
    assert_fails_naming(&output, "outputs.jsonl:2");
    assert!(!out.exists(), "no output on error");
}

#[test]
fn rank_rejects_a_bad_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_file(
        dir.path(),
        "rank.jsonl",
        &json!({"prompt": "p", "responses": ["a", "b"]}),
    );
    let out = dir.path().join("ranked.jsonl");
    let output = run(&["rank"], &[&bad, Path::new("--output"), &out]);
    assert_fails_naming(&output, "rank.jsonl:2");
}

#[test]
fn finetune_rejects_a_bad_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_file(
        dir.path(),
        "train.jsonl",
        &json!({"prompt": "p", "chosen": "a", "rejected": "b"}),
    );
    let out = dir.path().join("run");
    let output = run(
        &["finetune", "--max-steps", "1", "--data"],
        &[&bad, Path::new("--output"), &out],
    );
    assert_fails_naming(&output, "train.jsonl:2");
    assert!(!out.join("model").exists(), "no model exported on error");
}

/// An unlabeled row cannot train stage 2: the error names the file and the row.
#[test]
fn finetune_rejects_unlabeled_rows_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unlabeled.jsonl");
    write_jsonl(
        &data,
        &[json!({"prompt": "p", "response_a": "a", "response_b": "b"})],
    );
    let out = dir.path().join("run");
    let output = run(
        &["finetune", "--max-steps", "1", "--data"],
        &[&data, Path::new("--output"), &out],
    );
    assert_fails_naming(&output, "unlabeled.jsonl:1");
    assert!(texts(&output).1.contains("labeled pairs"));
}
