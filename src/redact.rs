//! Keeping credentials out of messages.
//!
//! Operators put credentials in host and URL values (`redisHost: user:pw@host:6379`,
//! `natsURL: nats://user:pw@host`, connection strings). Every configuration error, and every
//! store error logged or shown in health, goes through [`credentials`] first, so the user-info
//! part of any URL or `user@host` value never reaches a log line, a `mecha check` report or an
//! HTTP answer.

use std::borrow::Cow;

/// What replaces a user-info part.
pub const MASK: &str = "***";

/// `text` with the user-info part (everything before the last `@` of a token, after any
/// `scheme://`) of every token that has one replaced by [`MASK`]. Tokens are split at
/// whitespace, quotes, commas, semicolons and parentheses. Text without `@` is returned as is.
pub fn credentials(text: &str) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(is_delimiter).unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        out.push_str(&mask_token(token));
        let delim_len = tail.chars().next().map_or(0, char::len_utf8);
        out.push_str(&tail[..delim_len]);
        rest = &tail[delim_len..];
    }
    Cow::Owned(out)
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\'' | '"' | '`' | ',' | ';' | '(' | ')' | '<' | '>')
}

fn mask_token(token: &str) -> Cow<'_, str> {
    let Some(at) = token.rfind('@') else {
        return Cow::Borrowed(token);
    };
    let start = token.find("://").map_or(0, |i| i + 3);
    if start > at {
        return Cow::Borrowed(token);
    }
    Cow::Owned(format!("{}{MASK}{}", &token[..start], &token[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_masked_in_urls_and_host_values() {
        let cases = [
            (
                "redisHost 'user:pw@cache:6379' is not host:port",
                "redisHost '***@cache:6379' is not host:port",
            ),
            ("redis://u:p%40ss@h:1/0", "redis://***@h:1/0"),
            (
                "nats://a:b@n1:4222,nats://c:d@n2:4222",
                "nats://***@n1:4222,nats://***@n2:4222",
            ),
            ("tcp pw@host and more", "tcp ***@host and more"),
            ("(root:secret@tcp(db:3306)/)", "(***@tcp(db:3306)/)"),
        ];
        for (input, want) in cases {
            assert_eq!(credentials(input), want, "{input}");
            assert!(!credentials(input).contains("pw") || want.contains("pw"));
        }
    }

    #[test]
    fn text_without_user_info_is_unchanged_and_not_copied() {
        let plain = "redisHost 'cache:6379' is not host:port";
        assert!(matches!(credentials(plain), Cow::Borrowed(_)));
        assert_eq!(credentials("a@ b"), "***@ b");
        assert_eq!(credentials("naïve ü@x"), "naïve ***@x");
    }
}
