//! Tokenizer and chat template (being written on the `checkpoint` branch; agreed interface).

use crate::Result;

pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

pub struct TextCodec {}

impl TextCodec {
    pub fn encode(&self, _text: &str) -> Result<Vec<u32>> {
        Err(crate::Error::invalid("tokenizer not built yet"))
    }
    pub fn decode(&self, _ids: &[u32]) -> Result<String> {
        Err(crate::Error::invalid("tokenizer not built yet"))
    }
    pub fn token_id(&self, _text: &str) -> Result<u32> {
        Err(crate::Error::invalid("tokenizer not built yet"))
    }
    pub fn apply_chat_template(&self, _m: &[ChatMessage], _g: bool) -> Result<String> {
        Err(crate::Error::invalid("tokenizer not built yet"))
    }
    pub fn has_chat_template(&self) -> bool {
        false
    }
    pub fn eos_token_id(&self) -> Option<u32> {
        None
    }
    pub fn pad_token_id(&self) -> Option<u32> {
        None
    }
}
