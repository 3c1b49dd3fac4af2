//! The texts a model reads, and their token layouts: the judge prompt (stage 2 and the judge),
//! the stage-1 generation layout, and the reward-model sequence of the Bradley–Terry baseline.
//!
//! Training and judging both build their inputs here, so a model is trained on exactly the
//! prompt it will judge with.
//!
//! | layout | text |
//! |---|---|
//! | judge prompt ([`PromptBuilder`]) | [`PromptTemplate`] filled with `x`, `y_a`, `y_b`, in the chat template as one user turn |
//! | stage 1 ([`generation_input`], [`generation_target`]) | `[User Question]` block, then both answer blocks |
//! | reward model ([`reward_sequence`]) | a user and an assistant turn through the chat template |

use crate::tokenizer::{ChatMessage, ChatTemplateKwargs, TextCodec};
use crate::{Error, Result};
use std::ops::Range;

/// The default judge prompt: an impartial-judge instruction, the question and both responses in
/// delimited blocks, and the verdict cue last.
///
/// The text lives in `src/judge_template.txt` so that outside tools (e.g.
/// `scripts/transformers-crosscheck.py`) read exactly the same bytes.
pub const DEFAULT_TEMPLATE: &str = include_str!("judge_template.txt");

/// A judge prompt template: literal text with the three slots `{prompt}`, `{response_a}`,
/// `{response_b}`. Filling is a single pass, so slot-like text inside a response stays as is.
#[derive(Debug, Clone)]
pub struct PromptTemplate {
    text: String,
}

impl PromptTemplate {
    /// The slot names, in the form they appear in a template.
    pub const SLOTS: [&'static str; 3] = ["{prompt}", "{response_a}", "{response_b}"];

    /// Check that `text` holds every slot.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        for slot in Self::SLOTS {
            if !text.contains(slot) {
                return Err(Error::invalid(format!(
                    "the judge template has no {slot} slot"
                )));
            }
        }
        Ok(PromptTemplate { text })
    }

    /// The user's template text, or [`DEFAULT_TEMPLATE`] when there is none.
    pub fn or_default(text: Option<&str>) -> Result<Self> {
        Self::new(text.unwrap_or(DEFAULT_TEMPLATE))
    }

    /// The template with each slot replaced by its value, byte for byte.
    pub fn fill(&self, prompt: &str, response_a: &str, response_b: &str) -> String {
        self.fill_spans(prompt, response_a, response_b).0
    }

    /// [`PromptTemplate::fill`], and the byte ranges the values took in the result (in order).
    pub fn fill_spans(
        &self,
        prompt: &str,
        response_a: &str,
        response_b: &str,
    ) -> (String, Vec<Range<usize>>) {
        let values = [prompt, response_a, response_b];
        let mut out = String::with_capacity(
            self.text.len() + prompt.len() + response_a.len() + response_b.len(),
        );
        let mut spans = Vec::new();
        let mut rest = self.text.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let tail = &rest[start..];
            match Self::SLOTS.iter().position(|slot| tail.starts_with(slot)) {
                Some(i) => {
                    spans.push(out.len()..out.len() + values[i].len());
                    out.push_str(values[i]);
                    rest = &tail[Self::SLOTS[i].len()..];
                }
                None => {
                    out.push('{');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        (out, spans)
    }
}

/// The ids of the two verdict labels `(A, B)`: each must be a single token, and they must
/// differ.
pub fn verdict_tokens(codec: &TextCodec, labels: &(String, String)) -> Result<[u32; 2]> {
    let ids = [codec.token_id(&labels.0)?, codec.token_id(&labels.1)?];
    if ids[0] == ids[1] {
        return Err(Error::invalid("the two verdict labels are the same token"));
    }
    Ok(ids)
}

/// The token-level input for one ordered pair.
pub struct Sequence {
    pub ids: Vec<u32>,
    /// Whether the responses were shortened to fit `max_len`.
    pub truncated: bool,
}

/// Turns pairs into token sequences: fill the template, apply the chat template, tokenize, and
/// shorten the responses when the whole exceeds `max_len`.
pub struct PromptBuilder {
    codec: TextCodec,
    template: PromptTemplate,
    chat_template: bool,
    chat_template_kwargs: ChatTemplateKwargs,
    max_len: usize,
}

impl PromptBuilder {
    pub fn new(
        codec: TextCodec,
        template: PromptTemplate,
        chat_template: bool,
        max_len: usize,
    ) -> Self {
        PromptBuilder {
            codec,
            template,
            chat_template,
            chat_template_kwargs: ChatTemplateKwargs::new(),
            max_len,
        }
    }

    /// Render the chat template with these extra variables (e.g. `enable_thinking: false`).
    pub fn with_chat_template_kwargs(mut self, kwargs: ChatTemplateKwargs) -> Self {
        self.chat_template_kwargs = kwargs;
        self
    }

    /// The tokenizer and chat template.
    pub fn codec(&self) -> &TextCodec {
        &self.codec
    }

    /// The longest sequence built, in tokens.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The exact text the model reads for `(prompt, a, b)`.
    pub fn render(&self, prompt: &str, a: &str, b: &str) -> Result<String> {
        Ok(self.render_spans(prompt, a, b)?.0)
    }

    /// [`PromptBuilder::render`], and the byte ranges of the user's text in it, which are
    /// tokenized without special-token matching: through the chat template, the whole user
    /// turn (instruction and values); without it, the three values (so a `--template` written
    /// in the model's own markup keeps its special tokens).
    fn render_spans(&self, prompt: &str, a: &str, b: &str) -> Result<(String, Vec<Range<usize>>)> {
        let (filled, spans) = self.template.fill_spans(prompt, a, b);
        if self.chat_template && self.codec.has_chat_template() {
            let message = ChatMessage::new("user", filled);
            self.codec
                .apply_chat_template_spans(&[message], true, &self.chat_template_kwargs)
        } else {
            Ok((filled, spans))
        }
    }

    /// Token ids of the whole judge input for `(prompt, a, b)` (not shortened), special-token
    /// strings in the user's text encoded as ordinary text.
    pub fn encode(&self, prompt: &str, a: &str, b: &str) -> Result<Vec<u32>> {
        let (text, user) = self.render_spans(prompt, a, b)?;
        self.codec.encode_guarded(&text, &user)
    }

    /// Token ids for `(prompt, a, b)`, at most `max_len` long.
    ///
    /// When too long, both responses lose tokens from their ends in proportion to their
    /// lengths; the instruction and the verdict cue are never cut. A question too long to leave
    /// the responses half of the room keeps its end (the latest turns of a dialogue) in that
    /// half. If the template alone is longer than `max_len`, that is an error.
    pub fn sequence(&self, prompt: &str, a: &str, b: &str) -> Result<Sequence> {
        let ids = self.encode(prompt, a, b)?;
        if ids.len() <= self.max_len {
            return Ok(Sequence {
                ids,
                truncated: false,
            });
        }
        let fixed = self.encode("", "", "")?.len();
        if fixed >= self.max_len {
            return Err(Error::invalid(format!(
                "the judge prompt alone is {fixed} tokens, more than --max-len {}",
                self.max_len
            )));
        }
        let room = self.max_len - fixed;
        let p_ids = self.codec.encode_text(prompt)?;
        let a_ids = self.codec.encode_text(a)?;
        let b_ids = self.codec.encode_text(b)?;
        let responses = a_ids.len() + b_ids.len();
        let mut keep_p = p_ids
            .len()
            .min(room.saturating_sub(responses).max(room / 2));
        let share = (room - keep_p).min(responses);
        let mut keep_a = (a_ids.len() * share).checked_div(responses).unwrap_or(0);
        let mut keep_b = (share - keep_a).min(b_ids.len());
        // Re-tokenizing the joined text can differ by a few tokens from the sum of the parts,
        // so cut, re-check, and shave the remainder (a handful of rounds at most).
        for _ in 0..8 {
            let p_text = self.codec.decode(&p_ids[p_ids.len() - keep_p..])?;
            let a_text = self.codec.decode(&a_ids[..keep_a])?;
            let b_text = self.codec.decode(&b_ids[..keep_b])?;
            let ids = self.encode(&p_text, &a_text, &b_text)?;
            if ids.len() <= self.max_len {
                return Ok(Sequence {
                    ids,
                    truncated: true,
                });
            }
            // A question already cut gives up the remainder first; else the responses do.
            let mut excess = ids.len() - self.max_len;
            if keep_p < p_ids.len() {
                let cut_p = excess.min(keep_p);
                keep_p -= cut_p;
                excess -= cut_p;
            }
            let total = (keep_a + keep_b).max(1);
            let cut_a = (excess * keep_a).div_ceil(total).min(keep_a);
            let cut_b = excess.saturating_sub(cut_a).min(keep_b);
            keep_a -= cut_a;
            keep_b -= cut_b;
            keep_p -= excess.saturating_sub(cut_a + cut_b).min(keep_p);
        }
        Err(Error::invalid(
            "could not shorten the judge input to fit --max-len",
        ))
    }
}

/// The stage-1 input text for a prompt.
pub fn generation_input(prompt: &str) -> String {
    format!("[User Question]\n{prompt}\n\n")
}

/// The stage-1 target text: both responses in the judge prompt's answer blocks.
pub fn generation_target(a: &str, b: &str) -> String {
    format!(
        "[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]\n\n\
         [The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]"
    )
}

/// The sequence a scalar reward model reads for `(prompt, response)`: a user and an assistant
/// turn through the chat template, or `prompt\n\nresponse` without one; cut to `max_len`.
pub fn reward_sequence(
    codec: &TextCodec,
    prompt: &str,
    response: &str,
    max_len: usize,
) -> Result<Vec<u32>> {
    let mut ids = if codec.has_chat_template() {
        let turns = [
            ChatMessage::new("user", prompt),
            ChatMessage::new("assistant", response),
        ];
        let (text, user) =
            codec.apply_chat_template_spans(&turns, false, &ChatTemplateKwargs::new())?;
        codec.encode_guarded(&text, &user)?
    } else {
        codec.encode_text(&format!("{prompt}\n\n{response}"))?
    };
    ids.truncate(max_len);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_fills_each_slot_once_and_keeps_other_braces() {
        let t = PromptTemplate::new("Q: {prompt}\nA: {response_a}\nB: {response_b} {x}").unwrap();
        let filled = t.fill("a {response_b} b", "one", "two");
        assert_eq!(filled, "Q: a {response_b} b\nA: one\nB: two {x}");
    }

    #[test]
    fn template_without_a_slot_is_rejected() {
        let err = PromptTemplate::new("{prompt} {response_a}").unwrap_err();
        assert!(err.to_string().contains("{response_b}"), "{err}");
        assert!(PromptTemplate::new(DEFAULT_TEMPLATE).is_ok());
    }
}
