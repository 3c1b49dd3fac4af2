//! Text ⇄ token ids, and chat-template rendering.
//!
//! [`TextCodec`] wraps a Hugging Face `tokenizers` tokenizer together with the model's chat
//! template (Jinja, rendered with minijinja the way `transformers` renders it) and its
//! beginning/end/padding tokens. It is read from a Hugging Face directory (`tokenizer.json` +
//! `tokenizer_config.json`) or built from a GGUF file's byte-level BPE vocabulary, and written
//! back as a Hugging Face directory. Chat templates (compiling, rendering, locating the
//! messages' text in the result) are in `chat.rs`.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::{Error, Result};

mod chat;

pub use chat::{CHAT_TEMPLATE_FUEL, ChatMessage, ChatTemplateKwargs};
use chat::{ChatTemplate, chat_template_from_config};

/// A model's tokenizer, chat template and special tokens.
#[derive(Clone)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    /// The same tokenizer with special-token matching off (`encode_special_tokens`, as
    /// transformers' `split_special_tokens=True`): for text a user wrote, in which
    /// `<|im_end|>` is seven characters, not a control token.
    text_tokenizer: Tokenizer,
    chat: Option<ChatTemplate>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
}

/// A byte-level BPE vocabulary as stored in GGUF metadata (`tokenizer.ggml.model == "gpt2"`).
#[derive(Debug, Clone, Copy)]
pub struct ByteLevelBpe<'a> {
    /// `tokenizer.ggml.tokens`: token text (byte-level alphabet) by id.
    pub tokens: &'a [String],
    /// `tokenizer.ggml.token_type`: 1 normal, 3 control, 4 user-defined (others treated as normal).
    pub token_types: &'a [i64],
    /// `tokenizer.ggml.merges`: `"left right"` pairs, highest priority first.
    pub merges: &'a [String],
    /// `tokenizer.ggml.pre`: which pre-tokenizer split the model was trained with.
    pub pre: Option<&'a str>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<&'a str>,
}

/// GGUF `tokenizer.ggml.pre` values we know how to pre-tokenize, for error messages.
pub const SUPPORTED_PRE: &str =
    "default, gpt2, smollm, starcoder, refact, codeshell, llama-bpe, llama3, qwen2";

/// Llama 3's split regex (its `tokenizer.json` pre-tokenizer, also llama.cpp's `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2/Qwen3's split regex: Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl TextCodec {
    /// Read `tokenizer.json` (required), `tokenizer_config.json` (optional: chat template and
    /// special tokens) and `chat_template.jinja` (optional, newer transformers) from `dir`.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::checkpoint(
                &tokenizer_path,
                "missing: a Hugging Face model directory needs tokenizer.json",
            ));
        }
        let tokenizer = read_tokenizer_json(&tokenizer_path)?;

        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = if config_path.is_file() {
            let text =
                std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
            serde_json::from_str(&text)
                .map_err(|e| Error::checkpoint(&config_path, format!("invalid JSON: {e}")))?
        } else {
            serde_json::Value::Null
        };
        let special = |field: &str| -> Result<Option<String>> {
            match config.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => match v.get("content").and_then(|c| c.as_str()) {
                    Some(s) => Ok(Some(s.to_owned())),
                    None => Err(Error::checkpoint(
                        &config_path,
                        format!(
                            "field `{field}`: expected a string or {{\"content\": ...}}, got {v}"
                        ),
                    )),
                },
            }
        };
        let (bos_token, eos_token, pad_token) = (
            special("bos_token")?,
            special("eos_token")?,
            special("pad_token")?,
        );

        let jinja_path = dir.join("chat_template.jinja");
        let template = match config.get("chat_template") {
            Some(value) if !value.is_null() => {
                Some(chat_template_from_config(&config_path, value)?)
            }
            _ if jinja_path.is_file() => {
                Some(std::fs::read_to_string(&jinja_path).map_err(|e| Error::io(&jinja_path, e))?)
            }
            _ => None,
        };
        let chat = template
            .map(|t| ChatTemplate::compile(&config_path, t))
            .transpose()?;
        let codec = TextCodec {
            text_tokenizer: text_tokenizer(&tokenizer),
            tokenizer,
            chat,
            bos_token,
            eos_token,
            pad_token,
        };
        codec.check_special_tokens(&config_path)?;
        Ok(codec)
    }

    /// Build the tokenizer of a GGUF byte-level BPE vocabulary (`source` names the file for errors).
    ///
    /// Vocabulary id = position in `tokens`; merges keep their order as priorities; control and
    /// user-defined tokens (types 3, 4) become added special tokens, matched verbatim in text.
    /// The pre-tokenizer follows `pre`, the split the model was trained with (as llama.cpp does):
    /// GPT-2's regex for `gpt2`/`default`; single digits split off first for `smollm` and the
    /// StarCoder family (this matches SmolLM2's own `tokenizer.json`; transformers' GGUF loader
    /// ignores `pre` and uses the GPT-2 regex, which differs from it only on runs of digits);
    /// the Llama 3 and Qwen2 regexes for `llama-bpe`/`llama3` and `qwen2`.
    pub fn from_byte_level_bpe(source: &Path, bpe: ByteLevelBpe<'_>) -> Result<Self> {
        let bad = |message: String| Error::checkpoint(source, message);
        let vocab: Vocab = bpe
            .tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let merges = bpe
            .merges
            .iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
                None => Err(bad(format!(
                    "tokenizer.ggml.merges[{i}] = {m:?} is not two tokens separated by a space"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let (pre_tokenizer, ignore_merges) = byte_level_pre_tokenizer(bpe.pre).map_err(bad)?;
        let model = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| bad(format!("building the BPE tokenizer: {e}")))?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        tokenizer.with_post_processor(Some(PostProcessorWrapper::ByteLevel(ByteLevel::new(
            false, false, true,
        ))));
        let special: Vec<AddedToken> = bpe
            .tokens
            .iter()
            .zip(bpe.token_types)
            .filter(|(_, ty)| matches!(**ty, 3 | 4))
            .map(|(t, _)| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tokenizer.add_special_tokens(&special);

        let token_text = |id: Option<u32>, field: &str| -> Result<Option<String>> {
            id.map(|id| {
                bpe.tokens.get(id as usize).cloned().ok_or_else(|| {
                    bad(format!(
                        "{field} = {id} is past the {} tokens",
                        bpe.tokens.len()
                    ))
                })
            })
            .transpose()
        };
        let chat = bpe
            .chat_template
            .map(|t| ChatTemplate::compile(source, t.to_owned()))
            .transpose()?;
        Ok(TextCodec {
            text_tokenizer: text_tokenizer(&tokenizer),
            tokenizer,
            chat,
            bos_token: token_text(bpe.bos_id, "tokenizer.ggml.bos_token_id")?,
            eos_token: token_text(bpe.eos_id, "tokenizer.ggml.eos_token_id")?,
            pad_token: token_text(bpe.pad_id, "tokenizer.ggml.padding_token_id")?,
        })
    }

    /// Write `tokenizer.json` and `tokenizer_config.json` (chat template, bos/eos/pad tokens) into `dir`.
    pub fn write_hf_files(&self, dir: &Path) -> Result<()> {
        let tokenizer_path = dir.join("tokenizer.json");
        self.tokenizer
            .save(&tokenizer_path, false)
            .map_err(|e| Error::checkpoint(&tokenizer_path, format!("writing: {e}")))?;
        let mut config = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": false,
        });
        for (field, value) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
        ] {
            if let Some(value) = value {
                config[field] = value.clone().into();
            }
        }
        if let Some(chat) = &self.chat {
            config["chat_template"] = chat.source.clone().into();
        }
        let config_path = dir.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");
        std::fs::write(&config_path, text).map_err(|e| Error::io(&config_path, e))
    }

    /// Token ids of `text`, without any special tokens added (special tokens written in the
    /// text, such as `<|im_start|>`, are still recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        encode_with(&self.tokenizer, text)
    }

    /// Token ids of user-supplied `text`, special-token strings in it (`<|im_end|>`,
    /// `<|eot_id|>`, ...) encoded as ordinary text, never as control tokens.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        encode_with(&self.text_tokenizer, text)
    }

    /// Token ids of `text` whose byte ranges `user` (sorted, disjoint) hold user-supplied text:
    /// special tokens are recognised only outside them (the template's own markup), and user
    /// text is encoded as by [`TextCodec::encode_text`].
    ///
    /// Text between two special tokens is encoded as one piece whether it is the template's or
    /// the user's, exactly as `tokenizers` splits a string at its special tokens, so a text
    /// without special-token strings in its user ranges encodes as [`TextCodec::encode`] does.
    pub fn encode_guarded(&self, text: &str, user: &[Range<usize>]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        // Text awaiting encoding: everything since the last special token.
        let mut run = String::new();
        let mut at = 0;
        for span in user.iter().chain([&(text.len()..text.len())]) {
            let own = text.get(at..span.start).ok_or_else(|| {
                Error::invalid(format!(
                    "user text range {span:?} is out of order or not on a character boundary"
                ))
            })?;
            for (piece, special) in self.split_special(own)? {
                match special {
                    Some(id) => {
                        ids.extend(self.encode_text(&run)?);
                        run.clear();
                        ids.push(id);
                    }
                    None => run.push_str(piece),
                }
            }
            run.push_str(&text[span.clone()]);
            at = span.end;
        }
        ids.extend(self.encode_text(&run)?);
        Ok(ids)
    }

    /// `text` cut at the special tokens the full tokenizer finds in it: each piece with the
    /// special token's id, or `None` for ordinary text.
    fn split_special<'t>(&self, text: &'t str) -> Result<Vec<(&'t str, Option<u32>)>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::invalid(format!("tokenizing {:?}: {e}", preview(text))))?;
        let added = self.tokenizer.get_added_vocabulary();
        let mut pieces = Vec::new();
        let mut at = 0;
        for ((&id, token), &(start, end)) in encoding
            .get_ids()
            .iter()
            .zip(encoding.get_tokens())
            .zip(encoding.get_offsets())
        {
            if added.is_special_token(token) && start >= at {
                pieces.push((&text[at..start], None));
                pieces.push((&text[start..end], Some(id)));
                at = end;
            }
        }
        pieces.push((&text[at..], None));
        Ok(pieces)
    }

    /// The text of `ids` (special tokens included verbatim).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::invalid(format!("decoding {} token ids: {e}", ids.len())))
    }

    /// The id of the single token `token_text` encodes to; [`Error::Invalid`] naming it if it
    /// encodes to zero or several tokens (a verdict label must be one token).
    pub fn token_id(&self, token_text: &str) -> Result<u32> {
        match self.encode(token_text)?.as_slice() {
            [id] => Ok(*id),
            ids => Err(Error::invalid(format!(
                "{token_text:?} is not a single token: it encodes to {} tokens {ids:?}",
                ids.len()
            ))),
        }
    }

    /// Whether the model ships a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat.is_some()
    }

    /// The chat template's Jinja source, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat.as_ref().map(|c| c.source.as_str())
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token
            .as_deref()
            .and_then(|t| self.tokenizer.token_to_id(t))
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token
            .as_deref()
            .and_then(|t| self.tokenizer.token_to_id(t))
    }

    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_token
            .as_deref()
            .and_then(|t| self.tokenizer.token_to_id(t))
    }

    /// The id to right-pad batches with: the pad token, else end-of-sequence, else 0. Its value
    /// never matters for the scores (padded positions are never read), only that it is a
    /// valid token id.
    pub fn padding_id(&self) -> u32 {
        self.pad_token_id().or(self.eos_token_id()).unwrap_or(0)
    }

    /// Number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// One more than the largest token id, added tokens included: the embedding rows a model
    /// needs for every id this tokenizer can produce.
    pub fn id_bound(&self) -> usize {
        self.tokenizer
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Every configured special token must be in the vocabulary.
    fn check_special_tokens(&self, source: &Path) -> Result<()> {
        for (field, token) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
        ] {
            if let Some(token) = token
                && self.tokenizer.token_to_id(token).is_none()
            {
                return Err(Error::checkpoint(
                    source,
                    format!("field `{field}`: {token:?} is not in the vocabulary"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TextCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextCodec")
            .field("vocab_size", &self.vocab_size())
            .field("chat_template", &self.has_chat_template())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("pad_token", &self.pad_token)
            .finish()
    }
}

/// Read `tokenizer.json`: invalid JSON is an error naming its line and column (checked first,
/// as the `tokenizers` library panics on JSON broken inside `decoder`), and so is a structure
/// the library rejects; a panic of the library on anything else becomes an error too.
fn read_tokenizer_json(path: &Path) -> Result<Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| Error::checkpoint(path, format!("invalid JSON: {e}")))?;
    match std::panic::catch_unwind(|| text.parse::<Tokenizer>()) {
        Ok(Ok(tokenizer)) => Ok(tokenizer),
        Ok(Err(e)) => Err(Error::checkpoint(path, e.to_string())),
        Err(panic) => Err(Error::checkpoint(
            path,
            format!(
                "not a tokenizer the tokenizers library can read: {}",
                crate::error::panic_message(&*panic)
            ),
        )),
    }
}

/// The pre-tokenizer for GGUF `tokenizer.ggml.pre` and whether BPE should look whole pieces up
/// in the vocabulary before merging (`ignore_merges`, as in Llama 3's tokenizer.json).
fn byte_level_pre_tokenizer(
    pre: Option<&str>,
) -> std::result::Result<(PreTokenizerWrapper, bool), String> {
    let byte_level =
        |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    let split = |regex: &str| -> std::result::Result<PreTokenizerWrapper, String> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| format!("compiling the pre-tokenizer regex: {e}"))?;
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split.into(),
            byte_level(false),
        ])))
    };
    Ok(match pre.unwrap_or("default") {
        "default" | "gpt2" | "mpt" | "olmo" => (byte_level(true), false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => (
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level(true),
            ])),
            false,
        ),
        "llama-bpe" | "llama3" => (split(LLAMA3_SPLIT)?, true),
        "qwen2" => (split(QWEN2_SPLIT)?, false),
        other => {
            return Err(format!(
                "unsupported tokenizer.ggml.pre = {other:?} (supported: {SUPPORTED_PRE})"
            ));
        }
    })
}

/// `tokenizer` with special-token matching off: special-token strings are ordinary text.
fn text_tokenizer(tokenizer: &Tokenizer) -> Tokenizer {
    let mut plain = tokenizer.clone();
    plain.set_encode_special_tokens(true);
    plain
}

/// Token ids of `text` by `tokenizer`, no special tokens added around it.
fn encode_with(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let encoding = tokenizer
        .encode(text, false)
        .map_err(|e| Error::invalid(format!("tokenizing {:?}: {e}", preview(text))))?;
    Ok(encoding.get_ids().to_vec())
}

/// The start of `text`, for error messages.
fn preview(text: &str) -> String {
    text.chars().take(60).collect()
}
