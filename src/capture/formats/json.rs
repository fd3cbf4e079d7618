//! Canonical JSON exports: [`JsonOrders`], the streaming element scanner that
//! reads one order at a time from any reader, and [`read_json`] over bytes.
//!
//! Invariants: memory is one element plus a fixed buffer, whatever the file
//! size; the stream accepts exactly the files that are UTF-8 JSON and reports
//! the same lines and columns as parsing the whole file at once would.

use serde_json::value::RawValue;

use super::*;

/// Canonical JSON: one order object or an array of them, read whole from memory.
/// The folder reads files through [`JsonOrders`] instead, one order at a time.
pub fn read_json(bytes: &[u8]) -> Result<Parsed, ReadError> {
    let mut reader = JsonOrders::new(bytes);
    let mut parsed = Parsed::default();
    loop {
        match reader.next_order() {
            Ok(Some(Ok(order))) => parsed.orders.push(order),
            Ok(Some(Err(e))) => parsed.errors.push(e),
            Ok(None) => return Ok(parsed),
            Err(StreamError::Invalid(e)) => return Err(e),
            // A slice cannot fail to read; kept as a file error rather than a panic.
            Err(StreamError::Io(e)) => return Err(ReadError::file(e.to_string())),
        }
    }
}

/// Why a JSON export could not be read to its end.
#[derive(Debug)]
pub enum StreamError {
    /// The file as a whole is not what it should be (not JSON, not UTF-8): nothing of
    /// it may be used.
    Invalid(ReadError),
    /// Reading failed (the file vanished or was cut under us): try again later.
    Io(std::io::Error),
}

/// A canonical JSON export read incrementally: one order (or one order's error) per
/// call, holding only the element at hand and a fixed read buffer, never the file.
///
/// The file is split into its top-level elements by a small scanner that tracks
/// strings and bracket depth, and each element is handed to serde_json on its own,
/// so every error is located by line and column in the file. Everything between the
/// elements (`[`, `,`, `]`, whitespace) is checked here, and each element is checked
/// by serde_json in full, so a file whose orders all come back is valid UTF-8 JSON,
/// exactly as if it had been parsed at once. A syntax error anywhere is
/// [`StreamError::Invalid`] (the whole file is refused, as before); a well-formed
/// element that is not a valid order is an `Err` item for that order only.
pub struct JsonOrders<R> {
    src: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// File offset of `buf[pos]`.
    offset: u64,
    /// Line (from 1) of `buf[pos]`, and the file offset where that line starts.
    line: usize,
    line_start: u64,
    state: JsonState,
    /// The element being read (reused: its capacity is the largest element so far).
    elem: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonState {
    Start,
    /// After `[`: an element or `]`.
    First,
    /// After an element of the array: `,` or `]`.
    Next,
    /// The file is one order object.
    Single,
    /// After the array or the single object: only whitespace may follow.
    End,
    Done,
}

/// Read-buffer size: the memory a JSON export costs besides its largest order.
pub(super) const JSON_CHUNK: usize = 64 * 1024;

impl<R: std::io::Read> JsonOrders<R> {
    pub fn new(src: R) -> JsonOrders<R> {
        JsonOrders {
            src,
            buf: vec![0; JSON_CHUNK].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
            line: 1,
            line_start: 0,
            state: JsonState::Start,
            elem: Vec::new(),
        }
    }

    /// The next order of the file, `Some(Err)` for an element that is not a valid
    /// order (that order only), `None` at the end of a well-formed file.
    pub fn next_order(&mut self) -> Result<Option<Result<Order, ReadError>>, StreamError> {
        loop {
            match self.state {
                JsonState::Start => {
                    self.skip_bom()?;
                    self.skip_ws()?;
                    match self.peek()? {
                        None => return Err(self.syntax("EOF while parsing a value")),
                        Some(b'[') => {
                            self.advance(1);
                            self.state = JsonState::First;
                        }
                        Some(_) => self.state = JsonState::Single,
                    }
                }
                JsonState::First => {
                    self.skip_ws()?;
                    match self.peek()? {
                        None => return Err(self.syntax("EOF while parsing a list")),
                        Some(b']') => {
                            self.advance(1);
                            self.state = JsonState::End;
                        }
                        Some(_) => return self.element(JsonState::Next).map(Some),
                    }
                }
                JsonState::Next => {
                    self.skip_ws()?;
                    match self.peek()? {
                        None => return Err(self.syntax("EOF while parsing a list")),
                        Some(b',') => {
                            self.advance(1);
                            self.skip_ws()?;
                            if self.peek()? == Some(b']') {
                                return Err(self.syntax("trailing comma"));
                            }
                            return self.element(JsonState::Next).map(Some);
                        }
                        Some(b']') => {
                            self.advance(1);
                            self.state = JsonState::End;
                        }
                        Some(b) => return Err(self.unexpected(b, "expected `,` or `]`")),
                    }
                }
                JsonState::Single => return self.element(JsonState::End).map(Some),
                JsonState::End => {
                    self.skip_ws()?;
                    match self.peek()? {
                        None => self.state = JsonState::Done,
                        Some(b) => return Err(self.unexpected(b, "trailing characters")),
                    }
                }
                JsonState::Done => return Ok(None),
            }
        }
    }

    /// Reads one element (at the current position) and turns it into an order.
    pub(super) fn element(
        &mut self,
        then: JsonState,
    ) -> Result<Result<Order, ReadError>, StreamError> {
        if let Some(b @ (b',' | b']' | b'}')) = self.peek()? {
            return Err(self.unexpected(b, "expected value"));
        }
        let (base_line, base_col) = (self.line, self.column());
        self.scan_element()?;
        self.state = then;
        // A position inside the element, as a position in the file.
        let at = |l: usize, c: usize| {
            (
                base_line + l.saturating_sub(1),
                if l <= 1 {
                    base_col + c.saturating_sub(1)
                } else {
                    c
                },
            )
        };
        let text = match std::str::from_utf8(&self.elem) {
            Ok(t) => t,
            Err(e) => {
                let (l, c) = line_col_bytes(&self.elem, e.valid_up_to());
                let (line, column) = at(l, c);
                return Err(StreamError::Invalid(not_utf8(line, column)));
            }
        };
        // The common case first: a good order, without the bookkeeping of a path.
        let first = match serde_json::from_str::<Order>(text) {
            Ok(order) => Ok(order),
            Err(e) if e.is_data() => Err(()),
            Err(e) => {
                let (line, column) = at(e.line(), e.column());
                return Err(StreamError::Invalid(ReadError {
                    line: Some(line),
                    column: Some(column),
                    ..json_error(e)
                }));
            }
        };
        let order = match first {
            Ok(order) => order,
            Err(()) => {
                // serde_json stopped at the first wrong value: the rest of the element
                // must still be JSON, or the file is not.
                if let Err(e) = serde_json::from_str::<&RawValue>(text) {
                    let (line, column) = at(e.line(), e.column());
                    return Err(StreamError::Invalid(ReadError {
                        line: Some(line),
                        column: Some(column),
                        ..json_error(e)
                    }));
                }
                let mut de = serde_json::Deserializer::from_str(text);
                let e = match serde_path_to_error::deserialize::<_, Order>(&mut de) {
                    Ok(order) => order.check_captured().map(|()| order).err().map_or_else(
                        || ReadError::file("the order was read only on the second try"),
                        |e| ReadError {
                            line: Some(base_line),
                            column: None,
                            order_no: Some(e.order_no),
                            field: Some(e.field),
                            message: e.problem,
                        },
                    ),
                    Err(e) => {
                        let path = e.path().to_string();
                        let inner = e.into_inner();
                        let (line, column) = at(inner.line(), inner.column());
                        ReadError {
                            line: Some(line),
                            column: Some(column),
                            order_no: order_no_of(text),
                            field: (path != ".").then_some(path),
                            message: strip_position(&inner.to_string()),
                        }
                    }
                };
                return Ok(Err(e));
            }
        };
        Ok(match order.check_captured() {
            Ok(()) => Ok(order),
            Err(e) => Err(ReadError {
                line: Some(base_line),
                column: None,
                order_no: Some(e.order_no),
                field: Some(e.field),
                message: e.problem,
            }),
        })
    }

    /// Copies one JSON value's bytes into `elem`: an object or array up to its closing
    /// bracket, a string up to its closing quote, anything else up to whitespace or
    /// punctuation. Whether the bytes are valid JSON is serde_json's to say; at the end
    /// of the file the element simply ends (serde_json reports what is missing).
    pub(super) fn scan_element(&mut self) -> Result<(), StreamError> {
        self.elem.clear();
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        loop {
            if self.pos == self.end && !self.fill()? {
                return Ok(());
            }
            let chunk = &self.buf[self.pos..self.end];
            let mut done = None;
            let mut i = 0;
            if escaped {
                // The byte after a backslash that ended the last chunk.
                escaped = false;
                i = 1;
            }
            while i < chunk.len() {
                if in_str {
                    // Most of an order is string contents: skip to what can end them.
                    match chunk[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                        None => i = chunk.len(),
                        Some(k) if chunk[i + k] == b'\\' => {
                            i += k + 2;
                            if i > chunk.len() {
                                escaped = true;
                                i = chunk.len();
                            }
                        }
                        Some(k) => {
                            i += k + 1;
                            in_str = false;
                            if depth == 0 {
                                done = Some(i);
                                break;
                            }
                        }
                    }
                    continue;
                }
                match chunk[i] {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => {
                        done = Some(i);
                        break;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            done = Some(i + 1);
                            break;
                        }
                    }
                    b' ' | b'\t' | b'\n' | b'\r' | b',' if depth == 0 => {
                        done = Some(i);
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            let n = done.unwrap_or(chunk.len());
            self.elem.extend_from_slice(&chunk[..n]);
            self.advance(n);
            if done.is_some() {
                return Ok(());
            }
        }
    }

    pub(super) fn skip_bom(&mut self) -> Result<(), StreamError> {
        self.fill_to(3)?;
        if self.buf[self.pos..self.end].starts_with(b"\xEF\xBB\xBF") {
            // Not part of the text: columns on line 1 count from after it.
            self.pos += 3;
            self.offset += 3;
            self.line_start = self.offset;
        }
        Ok(())
    }

    pub(super) fn skip_ws(&mut self) -> Result<(), StreamError> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek()? {
            self.advance(1);
        }
        Ok(())
    }

    pub(super) fn peek(&mut self) -> Result<Option<u8>, StreamError> {
        if self.pos == self.end && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.pos]))
    }

    /// Reads more bytes after those in hand; false at the end of the file.
    pub(super) fn fill(&mut self) -> Result<bool, StreamError> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StreamError::Io(e)),
            }
        }
    }

    /// Consumes `n` bytes in hand, keeping the line count.
    pub(super) fn advance(&mut self, n: usize) {
        let taken = &self.buf[self.pos..self.pos + n];
        let lines = taken.iter().filter(|&&b| b == b'\n').count();
        if lines > 0 {
            self.line += lines;
            let last = taken.iter().rposition(|&b| b == b'\n').unwrap_or(0);
            self.line_start = self.offset + last as u64 + 1;
        }
        self.pos += n;
        self.offset += n as u64;
    }

    pub(super) fn column(&self) -> usize {
        (self.offset - self.line_start) as usize + 1
    }

    pub(super) fn syntax(&self, message: &str) -> StreamError {
        StreamError::Invalid(ReadError {
            line: Some(self.line),
            column: Some(self.column()),
            order_no: None,
            field: None,
            message: format!("not valid JSON: {message}"),
        })
    }

    /// An unexpected byte between elements: a syntax error, or the first sign that the
    /// file is in another encoding.
    pub(super) fn unexpected(&mut self, b: u8, message: &str) -> StreamError {
        if b >= 0x80 {
            // Up to one character's bytes: enough to tell a stray character from bytes
            // that are not UTF-8 at all.
            let _ = self.fill_to(4);
            let ahead = &self.buf[self.pos..self.end.min(self.pos + 4)];
            if let Err(e) = std::str::from_utf8(ahead) {
                if e.valid_up_to() == 0 && e.error_len().is_some() {
                    return StreamError::Invalid(not_utf8(self.line, self.column()));
                }
            }
        }
        self.syntax(message)
    }

    /// Makes at least `n` bytes available at `pos` unless the file ends first.
    pub(super) fn fill_to(&mut self, n: usize) -> Result<(), StreamError> {
        while self.end - self.pos < n {
            if !self.fill()? {
                break;
            }
        }
        Ok(())
    }
}

pub(super) fn json_error(e: serde_json::Error) -> ReadError {
    ReadError {
        line: Some(e.line()),
        column: Some(e.column()),
        order_no: None,
        field: None,
        message: format!("not valid JSON: {}", strip_position(&e.to_string())),
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
pub(super) fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Best effort: the order number of an element that failed to deserialise.
pub(super) fn order_no_of(part: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(part).ok()?;
    v.get("order_no")?.as_str().map(str::to_string)
}
