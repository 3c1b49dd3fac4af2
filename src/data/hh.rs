//! HH-RLHF: `chosen`, `rejected` whole `\n\nHuman: … \n\nAssistant: …` dialogues.

use super::dialogue::{Role, render_transcript};
use super::{Content, Row};
use crate::{Preference, Result};

const HH_HUMAN: &str = "\n\nHuman:";
/// The marker of an assistant turn; a `chosen` dialogue holding it announces HH-RLHF.
pub(super) const HH_ASSISTANT: &str = "\n\nAssistant:";

/// HH-RLHF: two whole dialogues that share everything before the final assistant turn.
///
/// The split point is the last `\n\nAssistant:` marker inside the longest common prefix of the
/// two dialogues: the prompt is everything before it (rendered as a transcript), each response
/// the text after it. This holds where a response itself contains a further marker (a few rows
/// do). An empty final assistant turn is kept: in HH-RLHF saying nothing is a labeled outcome.
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let chosen = row.take_str("chosen")?;
    let rejected = row.take_str("rejected")?;
    let common = chosen
        .char_indices()
        .zip(rejected.chars())
        .find(|((_, a), b)| a != b)
        .map_or(chosen.len().min(rejected.len()), |((i, _), _)| i);
    let split = chosen[..common].rfind(HH_ASSISTANT).ok_or_else(|| {
        row.location.error(
            Some("chosen"),
            "the dialogues share no prefix ending in an `Assistant:` turn",
        )
    })?;
    let reply = |dialogue: &str| dialogue[split + HH_ASSISTANT.len()..].trim().to_owned();
    let turns = hh_turns(&chosen[..split]);
    if turns.is_empty() {
        return Err(row
            .location
            .error(Some("chosen"), "no `Human:` turn before the final answer"));
    }
    Ok(Content::Preference(Preference {
        prompt: render_transcript(&turns),
        chosen: reply(&chosen),
        rejected: reply(&rejected),
    }))
}

/// Split `\n\nHuman: … \n\nAssistant: …` text into turns (text before the first marker is
/// dropped; HH dialogues start with a marker).
fn hh_turns(dialogue: &str) -> Vec<(Role, String)> {
    let mut turns = Vec::new();
    let mut rest = dialogue;
    let next_marker = |text: &str| {
        [(HH_HUMAN, Role::User), (HH_ASSISTANT, Role::Assistant)]
            .into_iter()
            .filter_map(|(marker, role)| text.find(marker).map(|at| (at, marker, role)))
            .min_by_key(|(at, _, _)| *at)
    };
    let mut current = next_marker(rest);
    while let Some((at, marker, role)) = current {
        rest = &rest[at + marker.len()..];
        current = next_marker(rest);
        let end = current.map_or(rest.len(), |(next, _, _)| next);
        turns.push((role, rest[..end].trim().to_owned()));
    }
    turns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hh_turns_split_on_markers() {
        let turns = hh_turns("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?");
        assert_eq!(
            turns,
            vec![
                (Role::User, "hi".to_owned()),
                (Role::Assistant, "hello".to_owned()),
                (Role::User, "how are you?".to_owned())
            ]
        );
        assert_eq!(render_transcript(&turns[..1]), "hi");
        assert_eq!(
            render_transcript(&turns),
            "Human: hi\n\nAssistant: hello\n\nHuman: how are you?"
        );
    }
}
