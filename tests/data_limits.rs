//! Reading data that is too big, badly encoded or adversarial: byte-order marks, invalid UTF-8,
//! over-long lines, gzip bombs, transcripts with many turns, prompts with many responses. Every
//! case is a clear error naming the file and line, or linear-time work.

mod common;

use common::{data_error, preference, scratch};
use gram::data::unlabeled::{self, Output, PairOptions};
use gram::data::{self, Content, Format, Record};

/// Gzip `bytes` into `path`.
fn write_gz(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap();
}

const PAIR_ROW: &str = r#"{"prompt":"p","response_a":"a","response_b":"b"}"#;

#[test]
fn a_byte_order_mark_is_skipped_in_every_file_form() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = format!("\u{feff}{PAIR_ROW}\n{PAIR_ROW}\n");
    let array = format!("\u{feff}[{PAIR_ROW}, {PAIR_ROW}]");
    for (name, text) in [
        ("rows.jsonl", &jsonl),
        ("rows.json", &array),
        ("rows.jsonl.gz", &jsonl),
        ("rows.json.gz", &array),
    ] {
        let path = dir.path().join(name);
        if name.ends_with(".gz") {
            write_gz(&path, text.as_bytes());
        } else {
            std::fs::write(&path, text).unwrap();
        }
        let records =
            data::read_preferences(&path, Format::Auto).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(records.len(), 2, "{name}");
        assert!(matches!(records[0].content, Content::Pair(_)), "{name}");
    }
    // `gram rank` / `gram reward` input too.
    let path = dir.path().join("rank.jsonl");
    std::fs::write(&path, format!("\u{feff}{PAIR_ROW}\n")).unwrap();
    let out = dir.path().join("out.jsonl");
    data::jsonl::process_rows(&path, Some(&out), 8, |rows| {
        Ok(rows.iter().map(|row| row.fields.clone()).collect())
    })
    .unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1);
}

#[test]
fn invalid_utf8_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let mut bytes = format!("{PAIR_ROW}\n\n").into_bytes();
    bytes.extend_from_slice(b"{\"prompt\":\"p\xff\",\"response_a\":\"a\",\"response_b\":\"b\"}\n");
    std::fs::write(&path, &bytes).unwrap();
    let (line, _, message) = data_error(data::read_preferences(&path, Format::Pairs));
    assert_eq!(line, Some(3), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
    // The same for `gram rank` / `gram reward` input.
    let err = data::jsonl::process_rows(&path, Some(&dir.path().join("o")), 8, |_| Ok(vec![]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.jsonl:3:") && err.contains("UTF-8"),
        "{err}"
    );
}

#[test]
fn an_over_long_line_names_its_line_and_the_limit() {
    let long = format!(
        r#"{{"prompt":"p","response_a":"{}","response_b":"b"}}"#,
        "a".repeat(5_000)
    );
    let (_dir, path) = scratch("long.jsonl", &format!("{PAIR_ROW}\n{long}\n{PAIR_ROW}\n"));
    let limits = data::ReadLimits {
        max_line_bytes: 1_000,
        ..Default::default()
    };
    let result: gram::Result<Vec<Record>> =
        data::open_with(&path, Format::Auto, limits).and_then(|records| records.collect());
    let (line, _, message) = data_error(result);
    assert_eq!(line, Some(2), "{message}");
    assert!(message.contains("limit of 1000 bytes"), "{message}");
    // Lines at the limit, with `\r\n` endings, are fine.
    let exact = format!("{}\r\n", &PAIR_ROW);
    let (_dir, path) = scratch("crlf.jsonl", &exact.repeat(3));
    let limits = data::ReadLimits {
        max_line_bytes: PAIR_ROW.len(),
        ..Default::default()
    };
    let records: Vec<Record> = data::open_with(&path, Format::Auto, limits)
        .unwrap()
        .collect::<gram::Result<_>>()
        .unwrap();
    assert_eq!(records.len(), 3);
}

#[test]
fn a_gzip_bomb_line_stops_at_the_default_limit() {
    // 64 MiB of one line (about 64 KiB gzipped): refused at the 16 MiB line limit, having
    // buffered no more than that.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.jsonl.gz");
    let mut text = br#"{"prompt":""#.to_vec();
    text.resize(64 << 20, b'a');
    write_gz(&path, &text);
    drop(text);
    let (line, _, message) = data_error(data::read_preferences(&path, Format::Auto));
    assert_eq!(line, Some(1), "{message}");
    assert!(
        message.contains(&format!("limit of {} bytes", 16 << 20)),
        "{message}"
    );
    // A JSON array is bounded as a whole, counted after gunzipping.
    let path = dir.path().join("rows.json.gz");
    write_gz(&path, format!("[{}]", [PAIR_ROW; 100].join(",")).as_bytes());
    let limits = data::ReadLimits {
        max_array_bytes: 1_000,
        ..Default::default()
    };
    let err = data::open_with(&path, Format::Auto, limits)
        .err()
        .expect("over the array limit")
        .to_string();
    assert!(err.contains("limit of 1000 bytes"), "{err}");
    assert_eq!(
        data::read_preferences(&path, Format::Auto).unwrap().len(),
        100
    );
}

#[test]
fn hh_transcripts_with_many_markers_split_in_linear_time() {
    // 20,000 `Human:` turns and a single `Assistant:` marker at the end: searching for the
    // next marker of each kind from every turn rescans the whole dialogue each time.
    let turns = 20_000;
    let mut dialogue = String::new();
    for k in 0..turns {
        dialogue.push_str(&format!(
            "\n\nHuman: question number {k} {}",
            "word ".repeat(60)
        ));
    }
    dialogue.push_str("\n\nAssistant:");
    let row = serde_json::json!({
        "chosen": format!("{dialogue} good answer"),
        "rejected": format!("{dialogue} bad answer"),
    });
    let (_dir, path) = scratch("many.jsonl", &format!("{row}\n"));
    let started = std::time::Instant::now();
    let records = data::read_preferences(&path, Format::Hh).unwrap();
    let elapsed = started.elapsed();
    let preference = preference(&records[0]);
    assert_eq!(preference.chosen, "good answer");
    assert_eq!(preference.rejected, "bad answer");
    assert_eq!(
        preference.prompt.matches("Human: question number").count(),
        turns
    );
    let last = preference.prompt.rsplit("\n\n").next().unwrap();
    assert_eq!(
        last,
        format!("Human: question number 19999 {}", "word ".repeat(60).trim())
    );
    // A 6 MB dialogue: a fraction of a second in linear time; rescanning from every turn
    // reads some 60 GB.
    assert!(elapsed.as_secs_f64() < 3.0, "{elapsed:?}");
}

/// `n` different responses (`response k`, by model `mk`) to `prompt`.
fn responses_to_one_prompt(prompt: &str, n: usize) -> Vec<Output> {
    (0..n)
        .map(|k| Output {
            prompt: prompt.into(),
            model: format!("m{k}"),
            response: format!("response {k}"),
        })
        .collect()
}

#[test]
fn pairs_per_prompt_are_drawn_without_listing_every_pair() {
    // 60,000 responses to one prompt: 1.8 billion possible pairs, of which 2 are drawn.
    let outputs = responses_to_one_prompt("p", 60_000);
    let options = PairOptions {
        per_prompt: Some(2),
        seed: 3,
        ..PairOptions::default()
    };
    let set = unlabeled::build_pairs(&outputs, options).unwrap();
    assert_eq!(set.pairs.len(), 2);
    assert_eq!((set.prompts, set.duplicates, set.empty), (1, 0, 0));
    assert_ne!(
        (&set.pairs[0].model_a, &set.pairs[0].model_b),
        (&set.pairs[1].model_a, &set.pairs[1].model_b)
    );
    for pair in &set.pairs {
        assert_ne!(pair.response_a, pair.response_b);
    }
    assert_eq!(
        unlabeled::build_pairs(&outputs, options).unwrap(),
        set,
        "reproducible"
    );
    // Every pair is reachable: 2,000 responses, all 1,999,000 pairs asked for one by one
    // would be slow to check, so draw from 5 responses until every pair of them has appeared.
    let few = &outputs[..5];
    let mut seen = std::collections::HashSet::new();
    for seed in 0..200 {
        let set = unlabeled::build_pairs(
            few,
            PairOptions {
                per_prompt: Some(3),
                seed,
                ..PairOptions::default()
            },
        )
        .unwrap();
        assert_eq!(set.pairs.len(), 3);
        for pair in set.pairs {
            let mut models = [pair.model_a, pair.model_b];
            models.sort();
            seen.insert(models);
        }
    }
    assert_eq!(seen.len(), 10);
    let all = unlabeled::build_pairs(
        few,
        PairOptions {
            per_prompt: Some(10),
            seed: 0,
            ..PairOptions::default()
        },
    )
    .unwrap();
    assert_eq!(all.pairs.len(), 10);
    // 2,000 responses per prompt with 2 pairs each, as `gram pairs --per-prompt 2` makes them.
    let many: Vec<Output> = (0..4)
        .flat_map(|p| {
            (0..2_000).map(move |k| Output {
                prompt: format!("prompt {p}"),
                model: format!("m{k}"),
                response: format!("response {k}"),
            })
        })
        .collect();
    let set = unlabeled::build_pairs(&many, options).unwrap();
    assert_eq!((set.pairs.len(), set.prompts), (8, 4));
}

#[test]
fn every_pair_of_many_responses_is_refused_before_any_is_made() {
    // 60,000 responses to one prompt, every pair asked for: 1.8 billion pairs (terabytes of
    // text) are refused at once, naming the count, the prompt and the way out.
    let outputs = responses_to_one_prompt("the prompt", 60_000);
    let message = unlabeled::build_pairs(&outputs, PairOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("1799970000 pairs would be made, over the limit of 1000000")
            && message.contains("\"the prompt\"")
            && message.contains("--per-prompt"),
        "{message}"
    );
    // The limit counts the pairs drawn: 60,000 responses with 3 per prompt are 3 pairs.
    let options = PairOptions {
        per_prompt: Some(3),
        max_pairs: 3,
        ..PairOptions::default()
    };
    assert_eq!(
        unlabeled::build_pairs(&outputs, options)
            .unwrap()
            .pairs
            .len(),
        3
    );
    let options = PairOptions {
        max_pairs: 2,
        ..options
    };
    assert!(unlabeled::build_pairs(&outputs, options).is_err());
}
