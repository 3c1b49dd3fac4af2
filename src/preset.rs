//! Presets: a judge prompt, its verdict labels and chat-template options that belong together,
//! as data. `--preset NAME` on `judge`, `eval`, `finetune` and `serve` selects one.
//!
//! | preset | for | prompt | labels | chat template |
//! |---|---|---|---|---|
//! | `gram` | the released GRAM checkpoints (NiuTrans) | [`GRAM_TEMPLATE`] | `A`, `B` | one user turn, generation prompt, `enable_thinking=False` |
//!
//! Adding a preset is one more [`Preset`] value in [`PRESETS`].

use crate::tokenizer::ChatTemplateKwargs;
use crate::{Error, Result};
use serde_json::Value;

/// A judge prompt, its verdict labels, and the extra variables its chat template is rendered
/// with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name `--preset` takes.
    pub name: &'static str,
    /// The judge prompt template, with `{prompt}`, `{response_a}`, `{response_b}`.
    pub template: &'static str,
    /// The verdict labels `(A, B)`, each one token.
    pub labels: (&'static str, &'static str),
    /// Extra variables for the chat template, as transformers' `apply_chat_template(**kwargs)`
    /// passes them: `(name, value)`, the value a JSON literal.
    pub chat_template_kwargs: &'static [(&'static str, &'static str)],
}

impl Preset {
    /// The labels as the judge takes them.
    pub fn labels(&self) -> (String, String) {
        (self.labels.0.to_owned(), self.labels.1.to_owned())
    }

    /// The chat-template variables as the judge takes them.
    pub fn chat_template_kwargs(&self) -> ChatTemplateKwargs {
        self.chat_template_kwargs
            .iter()
            .map(|(name, value)| {
                let value: Value =
                    serde_json::from_str(value).expect("preset kwargs are JSON literals");
                ((*name).to_owned(), value)
            })
            .collect()
    }
}

/// The GRAM authors' evaluation prompt, byte for byte, with their `{input}` slot named
/// `{prompt}`: `system_prompt` in NiuTrans/GRAM `evaluation/gram_eval.py` (commit 6a8a7c2, June
/// 2025; the `#Preferred: ` cue came with e481315, "Update prompt and disable think"). The
/// released checkpoints were fine-tuned on this text (the README's fine-tuning format), sent as
/// one user turn through the model's chat template with the generation prompt and, for Qwen3,
/// `enable_thinking=False`; the verdict is the next token, "A" or "B".
pub const GRAM_TEMPLATE: &str = concat!(
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user question displayed below. You should choose the assistant that follows the user's instructions and answers the user's question better.\n",
    "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of their responses. Avoid any position biases and ensure that the order in which the responses were presented does not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible.\n",
    "Please directly output your final verdict by strictly following this format: \"A\" if assistant A is better, \"B\" if assistant B is better.\n",
    "\n",
    "[User Question]\n",
    "{prompt}\n",
    "\n",
    "[The Start of Assistant A's Answer]\n",
    "{response_a}\n",
    "[The End of Assistant A's Answer]\n",
    "\n",
    "[The Start of Assistant B's Answer]\n",
    "{response_b}\n",
    "[The End of Assistant B's Answer]\n",
    "\n",
    "#Preferred: ",
);

/// The released GRAM checkpoints' prompt, labels and chat-template options.
pub const GRAM: Preset = Preset {
    name: "gram",
    template: GRAM_TEMPLATE,
    labels: ("A", "B"),
    chat_template_kwargs: &[("enable_thinking", "false")],
};

/// Every preset `--preset` knows.
pub const PRESETS: [Preset; 1] = [GRAM];

/// The preset called `name`, or an error listing the known ones.
pub fn preset(name: &str) -> Result<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let known: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        Error::invalid(format!(
            "unknown preset {name:?} (known: {})",
            known.join(", ")
        ))
    })
}
