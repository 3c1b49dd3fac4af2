//! Rendered chat formats undone: text that a policy's chat template produced (special-token
//! strings and all), back to the dialogue it encodes.
//!
//! RL trainers send what their policy read and wrote: OpenRLHF's `prompts` are the
//! chat-templated prompt, `<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n`, and its
//! responses end with the end-of-turn token. The judge must read the dialogue, not the markup, so
//! a rendered prompt here becomes its turns (rendered for the question block by
//! [`crate::data`]'s transcript rule: a lone user turn is its bare text), and a response loses its
//! trailing end-of-turn and end-of-sequence strings. Plain text passes through unchanged, so a
//! rendered prompt and response are judged exactly as the plain ones.
//!
//! | format | a turn | roles |
//! |---|---|---|
//! | ChatML (Qwen, SmolLM, ...) | `<\|im_start\|>role\n…<\|im_end\|>` | system, user, assistant |
//! | Llama 3 | `<\|start_header_id\|>role<\|end_header_id\|>\n\n…<\|eot_id\|>` | system, user, assistant |
//! | Gemma | `<start_of_turn>role\n…<end_of_turn>` | user, model |
//! | Phi-3 | `<\|role\|>\n…<\|end\|>` | system, user, assistant |
//! | Zephyr (TinyLlama) | `<\|role\|>\n…</s>` | system, user, assistant |
//! | Mistral / Llama 2 | `[INST] … [/INST]` answer `</s>`; Llama 2's `<<SYS>>\n…\n<</SYS>>\n\n` | system, user, assistant |
//!
//! A beginning-of-text marker (`<s>`, `<|begin_of_text|>`, `<bos>`) and left padding
//! (`<|endoftext|>`, `<pad>`) before the first turn are skipped. A final assistant turn that is
//! empty (the generation prompt, `<|im_start|>assistant\n`, possibly with Qwen3's empty
//! `<think>\n\n</think>` block) is dropped. The judge model's own template is one of these for
//! every architecture gram loads (SmolLM2 and Qwen: ChatML; Llama 3; Mistral: `[INST]`;
//! TinyLlama: Zephyr). Text that holds such markup but fits none of the formats is used as it
//! is, with a warning printed once per process.

use crate::data::Role;
use std::sync::Once;

/// Strings that end a turn or the text, stripped from the end of a response.
const END_MARKERS: [&str; 10] = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<eos>",
    "<|end|>",
    "</s>",
    "<|end▁of▁sentence|>",
];

/// Beginning-of-text and padding strings skipped before the first turn.
const LEADING_MARKERS: [&str; 5] = [
    "<s>",
    "<|begin_of_text|>",
    "<bos>",
    "<|endoftext|>",
    "<pad>",
];

/// A header-style format: each turn is `open` role `role_end` content `end`.
struct HeaderFormat {
    open: &'static str,
    role_end: &'static str,
    end: &'static str,
}

const HEADER_FORMATS: [HeaderFormat; 5] = [
    // ChatML
    HeaderFormat {
        open: "<|im_start|>",
        role_end: "\n",
        end: "<|im_end|>",
    },
    // Llama 3
    HeaderFormat {
        open: "<|start_header_id|>",
        role_end: "<|end_header_id|>\n\n",
        end: "<|eot_id|>",
    },
    // Gemma
    HeaderFormat {
        open: "<start_of_turn>",
        role_end: "\n",
        end: "<end_of_turn>",
    },
    // Phi-3
    HeaderFormat {
        open: "<|",
        role_end: "|>\n",
        end: "<|end|>",
    },
    // Zephyr (TinyLlama-Chat)
    HeaderFormat {
        open: "<|",
        role_end: "|>\n",
        end: "</s>",
    },
];

/// The turns of a rendered dialogue, or `None` when `text` is not one (plain text, or markup
/// of a format we do not know). Leading beginning-of-text and padding strings and trailing
/// end-of-turn and end-of-text strings are ignored; a trailing empty assistant turn (the
/// generation prompt) is dropped; the result has at least one turn.
pub fn parse(text: &str) -> Option<Vec<(Role, String)>> {
    let body = strip_end_markers(skip_leading(text));
    let mut turns = HEADER_FORMATS
        .iter()
        .find_map(|format| parse_headers(format, body))
        .or_else(|| parse_inst(body))?;
    if let Some((Role::Assistant, last)) = turns.last()
        && is_generation_prompt(last)
    {
        turns.pop();
    }
    (!turns.is_empty()).then_some(turns)
}

/// A response as the judge should read it: with trailing end-of-turn and end-of-text strings
/// (and the whitespace between them) removed, and unwrapped if it is a rendered lone assistant
/// turn. Plain text without them is returned unchanged.
pub fn response_text(text: &str) -> String {
    let stripped = strip_end_markers(text);
    match parse(stripped).as_deref() {
        Some([(Role::Assistant, content)]) => content.clone(),
        _ => {
            warn_if_markup(stripped);
            stripped.to_owned()
        }
    }
}

/// `text` without its trailing end-of-turn and end-of-text strings; unchanged (trailing
/// whitespace included) when it has none.
pub fn strip_end_markers(text: &str) -> &str {
    let mut text = text;
    while let Some(rest) = END_MARKERS
        .iter()
        .find_map(|marker| text.trim_end().strip_suffix(marker))
    {
        text = rest;
    }
    text
}

/// Print once per process that text holding chat markup was not recognised, if `text` holds a
/// known marker.
pub fn warn_if_markup(text: &str) {
    static WARNED: Once = Once::new();
    let markers = HEADER_FORMATS
        .iter()
        .flat_map(|format| [format.open, format.end])
        .filter(|marker| *marker != "<|")
        .chain(["[INST]", "[/INST]"])
        .chain(END_MARKERS)
        .chain(LEADING_MARKERS);
    if let Some(marker) = markers.into_iter().find(|marker| text.contains(marker)) {
        WARNED.call_once(|| {
            eprintln!(
                "gram: warning: text holding the chat marker {marker:?} fits no known chat \
                 format (ChatML, Llama 3, Gemma, Phi-3, [INST]); it is judged as plain text \
                 (this warning is printed once)"
            );
        });
    }
}

/// `text` after any beginning-of-text or padding markers (and whitespace) before the first
/// turn.
fn skip_leading(text: &str) -> &str {
    let mut text = text.trim_start();
    while let Some(rest) = LEADING_MARKERS
        .iter()
        .find_map(|marker| text.strip_prefix(marker))
    {
        text = rest.trim_start();
    }
    text
}

/// The role a chat format names: OpenAI's, and Gemma's `model` for the assistant.
fn role(name: &str) -> Option<Role> {
    match name {
        "system" => Some(Role::System),
        "user" => Some(Role::User),
        "assistant" | "model" => Some(Role::Assistant),
        _ => None,
    }
}

/// Whether an assistant turn's text is only the opening of a reply still to be generated:
/// blank, or Qwen3's empty thinking block.
fn is_generation_prompt(text: &str) -> bool {
    let text = text.trim();
    text.is_empty()
        || text
            .strip_prefix("<think>")
            .and_then(|rest| rest.strip_suffix("</think>"))
            .is_some_and(|inside| inside.trim().is_empty())
}

/// The turns of `text` in a header-style `format`; `None` unless all of it is turns. The last
/// turn may be open (no end marker): the text after its header is its content.
fn parse_headers(format: &HeaderFormat, text: &str) -> Option<Vec<(Role, String)>> {
    let mut rest = text;
    let mut turns = Vec::new();
    while !rest.trim_start().is_empty() {
        let after_open = rest.trim_start().strip_prefix(format.open)?;
        let (name, after_header) = after_open.split_once(format.role_end)?;
        let role = role(name)?;
        let (content, next) = match after_header.find(format.end) {
            Some(end) => (
                &after_header[..end],
                &after_header[end + format.end.len()..],
            ),
            // An open last turn: no further turn may start inside it.
            None if after_header.contains(format.open) => return None,
            None => (strip_end_markers(after_header), ""),
        };
        turns.push((role, content.to_owned()));
        rest = next;
    }
    (!turns.is_empty()).then_some(turns)
}

/// The turns of a Mistral / Llama 2 rendering: `[INST] user [/INST] answer</s>` repeated, an
/// optional Llama 2 system block at the start of the first instruction, `<s>` between turns.
fn parse_inst(text: &str) -> Option<Vec<(Role, String)>> {
    const SYS_OPEN: &str = "<<SYS>>\n";
    const SYS_CLOSE: &str = "\n<</SYS>>";
    let mut rest = text;
    let mut turns = Vec::new();
    loop {
        rest = skip_leading(rest);
        if rest.is_empty() {
            break;
        }
        let after_open = rest.strip_prefix("[INST]")?;
        let (mut user, after) = after_open.split_once("[/INST]")?;
        if turns.is_empty()
            && let Some(system) = user.trim_start().strip_prefix(SYS_OPEN)
        {
            let (system, tail) = system.split_once(SYS_CLOSE)?;
            turns.push((Role::System, system.trim().to_owned()));
            user = tail;
        }
        turns.push((Role::User, user.trim().to_owned()));
        let end = ["</s>", "[INST]"]
            .iter()
            .filter_map(|marker| after.find(marker))
            .min()
            .unwrap_or(after.len());
        let answer = after[..end].trim();
        if !answer.is_empty() {
            turns.push((Role::Assistant, answer.to_owned()));
        }
        rest = after[end..].strip_prefix("</s>").unwrap_or(&after[end..]);
    }
    (!turns.is_empty()).then_some(turns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(pairs: &[(Role, &str)]) -> Option<Vec<(Role, String)>> {
        Some(pairs.iter().map(|(r, t)| (*r, t.to_string())).collect())
    }

    #[test]
    fn each_format_parses_back_to_its_turns() {
        use Role::*;
        let dialogue = turns(&[(System, "Be brief."), (User, "Hi?"), (Assistant, "Hello.")]);
        let user_only = turns(&[(User, "What is 2+2?")]);
        let cases = [
            (
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n\
                 <|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>assistant\n",
                &dialogue,
            ),
            (
                "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
                &user_only,
            ),
            (
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
                 <|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|><|start_header_id|>\
                 assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                &dialogue,
            ),
            (
                "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
                &user_only,
            ),
            (
                "<|system|>\nBe brief.<|end|>\n<|user|>\nHi?<|end|>\n<|assistant|>\nHello.<|end|>\n<|assistant|>\n",
                &dialogue,
            ),
            (
                "<|system|>\nBe brief.</s>\n<|user|>\nHi?</s>\n<|assistant|>\nHello.</s>\n<|assistant|>\n",
                &dialogue,
            ),
            (
                "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi? [/INST] Hello. </s>",
                &dialogue,
            ),
            ("<s>[INST] What is 2+2? [/INST]", &user_only),
            ("<s>[INST]What is 2+2?[/INST]", &user_only),
        ];
        for (text, expected) in cases {
            assert_eq!(&parse(text), expected, "{text:?}");
        }
        let two = turns(&[(User, "a"), (Assistant, "b"), (User, "c")]);
        assert_eq!(parse("<s>[INST] a [/INST] b</s><s>[INST] c [/INST]"), two);
    }

    #[test]
    fn plain_or_unknown_text_is_not_a_dialogue() {
        for text in [
            "What is 2+2?",
            "",
            "<|im_start|>tool\nx<|im_end|>",
            "Explain <|im_start|> tokens",
            "<|im_start|>user\nhi<|im_end|> trailing words",
            "[INST] no closing tag",
            "<|im_start|>assistant\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn responses_lose_end_markers_only() {
        assert_eq!(response_text("Paris.<|im_end|>"), "Paris.");
        assert_eq!(response_text("Paris.<|eot_id|>\n<|end_of_text|>"), "Paris.");
        assert_eq!(response_text("Paris.</s>"), "Paris.");
        assert_eq!(response_text("Paris.  "), "Paris.  ");
        assert_eq!(response_text("a </s> b"), "a </s> b");
        assert_eq!(
            response_text("<|im_start|>assistant\nParis.<|im_end|>\n"),
            "Paris."
        );
    }
}
