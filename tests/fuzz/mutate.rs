//! Mutations of a valid input: byte-level (bit flips, boundary integers over length and count
//! fields, inserted, deleted, repeated and truncated ranges), JSON-aware (a value anywhere in
//! the tree replaced by a boundary value, a hostile string or a deep/long array; keys removed or
//! renamed; rows repeated) and text-aware (fragments of the input's own language spliced in).

use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

/// How an input is best mutated.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A binary container (GGUF, safetensors): byte operations, integers at every offset.
    Binary,
    /// JSON, one value per line or the whole input: tree operations, then sometimes bytes.
    Json,
    /// A template language: its fragments spliced in, then sometimes bytes.
    Text(&'static [&'static str]),
}

/// Longest mutant: 1 MiB (mutants of mutants would otherwise grow without bound).
pub const MAX_INPUT: usize = 1 << 20;

/// A mutant of `input`: one to four stacked operations of its [`Shape`], at most
/// [`MAX_INPUT`] bytes.
pub fn mutate(rng: &mut ChaCha8Rng, input: &[u8], shape: Shape) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = rng.random_range(1..=4);
    for _ in 0..rounds {
        out.truncate(MAX_INPUT);
        match shape {
            Shape::Binary => bytes(rng, &mut out),
            Shape::Json if rng.random_bool(0.75) => json_lines(rng, &mut out),
            Shape::Text(fragments) if rng.random_bool(0.75) => splice(rng, &mut out, fragments),
            Shape::Json | Shape::Text(_) => bytes(rng, &mut out),
        }
    }
    out.truncate(MAX_INPUT);
    out
}

/// Integers that sit on the edges of what readers check: zero, one, powers of two, the
/// largest signed and unsigned values of each width, and the small ids of GGUF types.
const BOUNDARY: [u64; 20] = [
    0,
    1,
    2,
    3,
    7,
    8,
    12,
    14,
    30,
    255,
    4096,
    65_535,
    (1 << 31) - 1,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    1 << 60,
    i64::MAX as u64,
    u64::MAX,
];

/// Bytes at the start of an input where most byte operations land.
const HEAD: usize = 2048;

/// One byte-level operation on `data`.
fn bytes(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        data.push(rng.random());
        return;
    }
    // Containers keep their structure (counts, lengths, types, offsets) in the first
    // kilobytes and their bulk data after it: most operations land in the head.
    let head = data.len().min(HEAD);
    let at = if rng.random_bool(0.7) {
        rng.random_range(0..head)
    } else {
        rng.random_range(0..data.len())
    };
    match rng.random_range(0..8) {
        0 => data[at] ^= 1 << rng.random_range(0..8),
        1 => data[at] = rng.random(),
        // A boundary integer over a 4- or 8-byte little-endian field, where counts, lengths,
        // dimensions, types and offsets live.
        2 | 3 => {
            let value = *BOUNDARY.choose(rng).expect("non-empty");
            let width = if rng.random_bool(0.5) { 4 } else { 8 };
            let le = value.to_le_bytes();
            let end = (at + width).min(data.len());
            data[at..end].copy_from_slice(&le[..end - at]);
        }
        4 => {
            let n = rng.random_range(1..=16);
            let mut noise = vec![0; n];
            rng.fill_bytes(&mut noise);
            data.splice(at..at, noise);
        }
        5 => {
            let end = rng.random_range(at..=data.len().min(at + 64));
            data.drain(at..end);
        }
        // Repeat a range up to 64 times (longer inputs, repeated keys and tensors).
        6 => {
            let end = rng.random_range(at..=data.len().min(at + 32));
            let chunk = data[at..end].to_vec();
            let times = rng.random_range(1..=64);
            let repeated: Vec<u8> = chunk
                .iter()
                .copied()
                .cycle()
                .take(chunk.len() * times)
                .collect();
            data.splice(end..end, repeated);
        }
        _ => data.truncate(at),
    }
}

/// Splice one of `fragments` into `data` at a random char boundary, or repeat a range.
fn splice(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, fragments: &[&str]) {
    let at = rng.random_range(0..=data.len());
    let fragment = fragments.choose(rng).expect("non-empty fragments");
    data.splice(at..at, fragment.bytes());
}

/// Mutate one line of a JSON-lines input (or the whole input, if it is one JSON text) through
/// its value tree; add or repeat lines; prepend a byte order mark. Input that is not JSON gets
/// a byte operation instead.
fn json_lines(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let at = rng.random_range(0..lines.len());
    match rng.random_range(0..10) {
        0 => {
            let line = lines[at].clone();
            let times = rng.random_range(1..=8);
            lines.splice(at..at, std::iter::repeat_n(line, times));
        }
        1 => lines.insert(at, String::new()),
        2 => lines[0].insert(0, '\u{feff}'),
        _ => match serde_json::from_str::<Value>(&lines[at]) {
            Ok(mut value) => {
                tree(rng, &mut value);
                lines[at] = value.to_string();
            }
            Err(_) => return bytes(rng, data),
        },
    }
    *data = lines.join("\n").into_bytes();
}

/// Replace one node of `value` (found by a random walk) with a hostile value, or remove or
/// rename one of its keys.
fn tree(rng: &mut ChaCha8Rng, value: &mut Value) {
    let mut node = value;
    loop {
        let children = match &*node {
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            _ => 0,
        };
        if children == 0 || rng.random_bool(0.3) {
            break;
        }
        let k = rng.random_range(0..children);
        node = match node {
            Value::Array(items) => &mut items[k],
            Value::Object(map) if rng.random_bool(0.15) => {
                let key = map.keys().nth(k).expect("k < len").clone();
                let removed = map.remove(&key).expect("present");
                if rng.random_bool(0.5) {
                    map.insert(format!("{key}_"), removed);
                }
                return;
            }
            Value::Object(map) => map.values_mut().nth(k).expect("k < len"),
            _ => unreachable!("leaves have no children"),
        };
    }
    *node = hostile(rng, node);
}

/// A value that tests a reader's assumptions about `old`: a boundary number, an empty, long or
/// path-like string, a different type, a deep or long array.
fn hostile(rng: &mut ChaCha8Rng, old: &Value) -> Value {
    let number = *BOUNDARY.choose(rng).expect("non-empty");
    match rng.random_range(0..14) {
        0 => json!(number),
        1 => json!(-(number as i64)),
        2 => json!(number as f64 * 0.5),
        3 => json!(f64::MAX),
        4 => json!(""),
        5 => json!("x".repeat(rng.random_range(1..5000))),
        6 => json!(
            [
                "../x",
                "/dev/zero",
                ".",
                "a/../../b",
                "\u{0}",
                "\n\nHuman: ",
                "\n\nAssistant: "
            ]
            .choose(rng)
            .expect("non-empty")
        ),
        7 => Value::Null,
        8 => json!(rng.random_bool(0.5)),
        9 => Value::Object(Map::new()),
        10 => {
            let depth = rng.random_range(1..200);
            (0..depth).fold(json!(0), |inner, _| json!([inner]))
        }
        11 => Value::Array(vec![old.clone(); rng.random_range(0..64)]),
        12 => json!([{ "role": "user", "content": old }, { "role": "assistant", "content": "" }]),
        _ => match old {
            Value::String(s) => json!(s.repeat(rng.random_range(0..32))),
            other => json!(other.to_string()),
        },
    }
}
