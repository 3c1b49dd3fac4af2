//! Chat templates: the model's Jinja template compiled and rendered the way `transformers`
//! renders it (minijinja with Python string methods, under a fuel limit), the messages it
//! renders, and where their texts land in the output (for tokenizing user text without
//! special-token matching).

use super::TextCodec;
use crate::{Error, Result};
use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

/// One turn of a conversation, as chat templates expect it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message from `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template and its source text.
#[derive(Clone)]
pub(super) struct ChatTemplate {
    pub(super) source: String,
    env: Environment<'static>,
}

/// Extra chat-template variables by name (transformers' `apply_chat_template` kwargs).
pub type ChatTemplateKwargs = BTreeMap<String, serde_json::Value>;

/// Name under which the chat template is registered in its minijinja environment.
const CHAT_TEMPLATE: &str = "chat_template";

/// The most minijinja instructions one chat-template render may execute. Real templates
/// rendering a judge prompt or a two-turn conversation use a few thousand; a template that
/// loops for ever (or 10^10 times) stops with an error after about a second instead of hanging.
pub const CHAT_TEMPLATE_FUEL: u64 = 10_000_000;

impl TextCodec {
    /// Render `messages` through the model's chat template, appending the assistant turn's
    /// opening when `add_generation_prompt` (as `transformers`' `apply_chat_template(tokenize=False)`).
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.apply_chat_template_with(messages, add_generation_prompt, &ChatTemplateKwargs::new())
    }

    /// [`Self::apply_chat_template`] with extra template variables, as transformers'
    /// `apply_chat_template(..., **kwargs)` passes them (e.g. Qwen3's `enable_thinking`).
    /// `messages`, `add_generation_prompt` and the special tokens are set after them.
    pub fn apply_chat_template_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &ChatTemplateKwargs,
    ) -> Result<String> {
        let chat = self
            .chat
            .as_ref()
            .ok_or_else(|| Error::invalid("this model has no chat template"))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                let fields = [("role", &m.role), ("content", &m.content)];
                Value::from_object(
                    fields
                        .map(|(k, v)| (k.to_owned(), Value::from(v.as_str())))
                        .into_iter()
                        .collect::<BTreeMap<_, _>>(),
                )
            })
            .collect();
        let mut context: BTreeMap<String, Value> = kwargs
            .iter()
            .map(|(name, value)| (name.clone(), Value::from(minijinja::value::Serde(value))))
            .collect();
        context.insert("messages".into(), Value::from(messages));
        context.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        for (name, token) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
        ] {
            if let Some(token) = token {
                context.insert(name.into(), Value::from(token.as_str()));
            }
        }
        let template = chat
            .env
            .get_template(CHAT_TEMPLATE)
            .expect("the chat template was added at construction");
        template.render(Value::from_object(context)).map_err(|e| {
            let why = if e.kind() == ErrorKind::OutOfFuel {
                format!(" (it ran past {CHAT_TEMPLATE_FUEL} instructions; does it loop for ever?)")
            } else {
                String::new()
            };
            Error::invalid(format!("rendering the chat template{why}: {e:#}"))
        })
    }

    /// [`TextCodec::apply_chat_template_with`], and the byte ranges of the messages' contents
    /// in the result, in order (for [`TextCodec::encode_guarded`]).
    ///
    /// The ranges come from a second rendering with a unique placeholder for each content, so
    /// a content that repeats the template's markup (`<|im_start|>`) is never mistaken for
    /// it. Each content must then stand in the output as it is or trimmed (Llama 3's template
    /// trims); a template that rewrites a message otherwise is refused, since its markup could
    /// then not be told from the message's text.
    pub fn apply_chat_template_spans(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &ChatTemplateKwargs,
    ) -> Result<(String, Vec<Range<usize>>)> {
        let rendered = self.apply_chat_template_with(messages, add_generation_prompt, kwargs)?;
        let placeholders: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage::new(m.role.clone(), format!("\u{E000}{i}\u{E001}")))
            .collect();
        let frame = self.apply_chat_template_with(&placeholders, add_generation_prompt, kwargs)?;
        let changed = || {
            Error::invalid(
                "the chat template changes a message's text (beyond trimming it), so its markup \
                 cannot be told from the message; use --no-chat-template",
            )
        };
        for trim in [false, true] {
            let mut text = String::with_capacity(rendered.len());
            let mut spans = Vec::with_capacity(messages.len());
            let mut rest = frame.as_str();
            for (message, placeholder) in messages.iter().zip(&placeholders) {
                let at = rest.find(&placeholder.content).ok_or_else(changed)?;
                text.push_str(&rest[..at]);
                let content = if trim {
                    message.content.trim()
                } else {
                    &message.content
                };
                spans.push(text.len()..text.len() + content.len());
                text.push_str(content);
                rest = &rest[at + placeholder.content.len()..];
            }
            text.push_str(rest);
            if text == rendered {
                return Ok((rendered, spans));
            }
        }
        Err(changed())
    }
}

impl ChatTemplate {
    /// Compile `source` the way transformers does: `trim_blocks` and `lstrip_blocks` on, Python
    /// string methods (`.strip()`, `.startswith()`, ...) available, and `raise_exception(msg)`
    /// failing the render with `msg`. Compile errors are reported against `path`.
    pub(super) fn compile(path: &Path, source: String) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are valid");
        env.set_syntax(syntax);
        env.set_fuel(Some(CHAT_TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(CHAT_TEMPLATE, source.clone())
            .map_err(|e| {
                Error::checkpoint(path, format!("chat template does not compile: {e:#}"))
            })?;
        Ok(ChatTemplate { source, env })
    }
}

/// The `chat_template` field of tokenizer_config.json: a string, or a list of
/// `{"name", "template"}` of which we take the one named `default`.
pub(super) fn chat_template_from_config(path: &Path, value: &serde_json::Value) -> Result<String> {
    if let Some(s) = value.as_str() {
        return Ok(s.to_owned());
    }
    let named = value.as_array().ok_or_else(|| {
        Error::checkpoint(
            path,
            "field `chat_template`: expected a string or a list of {name, template}",
        )
    })?;
    let names: Vec<&str> = named
        .iter()
        .filter_map(|t| t.get("name")?.as_str())
        .collect();
    named
        .iter()
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
        .and_then(|t| t.get("template")?.as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::checkpoint(
                path,
                format!("field `chat_template`: no template named \"default\" (found {names:?})"),
            )
        })
}
