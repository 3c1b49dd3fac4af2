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
///
/// One left-to-right scan finds every marker (the earliest match at each point, as repeated
/// `find`s would, markers never overlapping), so a transcript with many turns splits in time
/// linear in its length.
fn hh_turns(dialogue: &str) -> Vec<(Role, String)> {
    let bytes = dialogue.as_bytes();
    // (where the marker starts, where its text starts, the turn's role)
    let mut markers = Vec::new();
    let mut at = 0;
    while at + 1 < bytes.len() {
        if bytes[at] == b'\n' && bytes[at + 1] == b'\n' {
            // `at` is an ASCII byte, so a char boundary.
            let rest = &dialogue[at..];
            let found = [(HH_HUMAN, Role::User), (HH_ASSISTANT, Role::Assistant)]
                .into_iter()
                .find(|(marker, _)| rest.starts_with(marker));
            if let Some((marker, role)) = found {
                markers.push((at, at + marker.len(), role));
                at += marker.len();
                continue;
            }
        }
        at += 1;
    }
    let ends = markers
        .iter()
        .skip(1)
        .map(|&(start, _, _)| start)
        .chain([dialogue.len()]);
    markers
        .iter()
        .zip(ends)
        .map(|(&(_, text, role), end)| (role, dialogue[text..end].trim().to_owned()))
        .collect()
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
        // Text before the first marker is dropped; a blank line before a marker is not part
        // of it; a marker at the very end is an empty turn.
        assert_eq!(
            hh_turns("intro\n\n\nHuman: a\n\nAssistant:"),
            vec![
                (Role::User, "a".to_owned()),
                (Role::Assistant, String::new())
            ]
        );
        assert_eq!(
            render_transcript(&turns),
            "Human: hi\n\nAssistant: hello\n\nHuman: how are you?"
        );
    }
}
