//! Incremental server-sent events parser: bytes in any chunking -> complete events.

/// One event: its `event:` name (empty when absent) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// Event name.
    pub event: String,
    /// Data payload.
    pub data: String,
}

/// Buffers partial lines between network chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                let line = std::mem::take(&mut self.line);
                if let Some(event) = self.on_line(&line) {
                    events.push(event);
                }
            } else {
                self.line.push(b);
            }
        }
        events
    }

    /// Ends the input: an event not closed by a blank line is returned if it has data.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            if let Some(event) = self.on_line(&line) {
                return Some(event);
            }
        }
        self.on_line(b"")
    }

    fn on_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            if !self.has_data {
                self.current = SseEvent::default();
                return None;
            }
            self.has_data = false;
            return Some(std::mem::take(&mut self.current));
        }
        if line[0] == b':' {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (text.to_string(), String::new()),
        };
        match field.as_str() {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            "event" => self.current.event = value,
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let input = b"event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";
        for split in 0..input.len() {
            let mut p = SseParser::default();
            let mut events = p.feed(&input[..split]);
            events.extend(p.feed(&input[split..]));
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: "message_start".into(),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: String::new(),
                        data: "x\ny".into()
                    },
                    SseEvent {
                        event: String::new(),
                        data: "[DONE]".into()
                    },
                ],
                "split at {split}"
            );
            assert_eq!(p.finish(), None);
        }
    }

    #[test]
    fn unterminated_event_is_returned_at_finish() {
        let mut p = SseParser::default();
        assert!(p.feed(b"data: {\"partial\":true}").is_empty());
        assert_eq!(p.finish().unwrap().data, "{\"partial\":true}");
    }

    #[test]
    fn multibyte_characters_split_across_chunks() {
        let input = "data: {\"content\":\"é\"}\n\n".as_bytes();
        let at = input.iter().position(|&b| b == 0xC3).unwrap() + 1;
        let mut p = SseParser::default();
        let mut events = p.feed(&input[..at]);
        events.extend(p.feed(&input[at..]));
        assert_eq!(events[0].data, "{\"content\":\"é\"}");
    }
}
