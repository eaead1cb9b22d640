//! What the fuzz targets share: the properties every parser's messages keep.
//!
//! A message built from input holds none of it raw: each piece is cut and made inert
//! (`mkplan::quote`), so a hostile file or server cannot flood the terminal or forge a line.
//! The targets check that on every error they see, beside "no panic" and the round trips.

/// The longest message a parser may build from any input, in bytes: the pieces of input it
/// quotes are bounded (`quote::QUOTE_CHARS_MAX`, `MESSAGE_CHARS_MAX`, `PATH_CHARS_MAX`), so a
/// longer one echoes input it should have cut.
pub const MESSAGE_BYTES_MAX: usize = 8 * 1024;

/// `message` (one line: a parser's own words around quoted input) is bounded and holds no
/// control character, not even a newline.
#[track_caller]
pub fn assert_inert_line(what: &str, message: &str) {
    assert!(
        message.len() <= MESSAGE_BYTES_MAX,
        "{what}: a message of {} bytes echoes unbounded input: {:?}…",
        message.len(),
        &message[..message.floor_char_boundary(200)]
    );
    if let Some(c) = message.chars().find(|c| mkplan::quote::is_control_like(*c)) {
        panic!("{what}: the message holds the control character {c:?}: {message:?}");
    }
}

/// `message` (several lines of our own layout) is bounded; the layout's newlines aside, it
/// holds no control character.
#[track_caller]
pub fn assert_inert_lines(what: &str, message: &str) {
    for line in message.split('\n') {
        assert_inert_line(what, line);
    }
    assert!(
        message.len() <= MESSAGE_BYTES_MAX,
        "{what}: a message of {} bytes",
        message.len()
    );
}

/// An `InputError`: its message is one inert line, and a file that is not the kind of file
/// it was named as (`not_a`) shows no line of itself.
#[track_caller]
pub fn assert_input_error(what: &str, error: &mkplan::model::InputError) {
    assert_inert_line(what, &error.message);
    if error.message.starts_with("this is not ") {
        assert!(
            error.source_line.is_none(),
            "{what}: a file that is not one shows a line of itself: {error:?}"
        );
    }
    // Rendering it (the snippet, the caret) never panics, and cuts the file's line.
    assert_inert_lines(what, &error.to_string());
}
