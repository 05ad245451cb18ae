//! Compose variable interpolation (`${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `$VAR`, `$$`) and `.env` / `env_file` parsing.
//!
//! As `docker compose` does, a variable comes from the process environment first, then from
//! the `.env` file next to the Compose file. Values are never printed: warnings and errors name
//! only the variable.

use std::collections::{BTreeMap, BTreeSet};

/// Where variables come from.
#[derive(Clone, Debug, Default)]
pub struct Variables {
    /// The process environment (wins).
    pub process: BTreeMap<String, String>,
    /// The `.env` file next to the Compose file.
    pub dotenv: BTreeMap<String, String>,
}

impl Variables {
    fn get(&self, name: &str) -> Option<&str> {
        self.process
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
    }
}

/// What interpolating a string needed that it did not find.
#[derive(Debug, Default)]
pub struct Unset {
    /// Variables used without a default that are not set (replaced by an empty string).
    pub names: BTreeSet<String>,
}

/// Interpolates one string. `Err` carries the message of a `${VAR:?message}` whose variable is
/// not set, or says what is malformed.
pub fn interpolate(text: &str, vars: &Variables, unset: &mut Unset) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body)
                .ok_or_else(|| format!("unclosed '${{' in {:?}", shorten(text)))?;
            out.push_str(&substitute(&body[..end], vars, unset)?);
            rest = &body[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..len], vars, unset));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, allowing nested `${...}` in defaults.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn lookup(name: &str, vars: &Variables, unset: &mut Unset) -> String {
    match vars.get(name) {
        Some(v) => v.to_owned(),
        None => {
            unset.names.insert(name.to_owned());
            String::new()
        }
    }
}

fn substitute(expr: &str, vars: &Variables, unset: &mut Unset) -> Result<String, String> {
    let name_len = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, op) = expr.split_at(name_len);
    if name.is_empty() {
        return Err(format!("'${{{expr}}}' names no variable"));
    }
    let value = vars.get(name);
    let empty = value.is_none_or(str::is_empty);
    let (test, arg) = match op {
        "" => return Ok(lookup(name, vars, unset)),
        _ if op.starts_with(":-") => (Test::Default(empty), &op[2..]),
        _ if op.starts_with('-') => (Test::Default(value.is_none()), &op[1..]),
        _ if op.starts_with(":?") => (Test::Required(empty), &op[2..]),
        _ if op.starts_with('?') => (Test::Required(value.is_none()), &op[1..]),
        _ if op.starts_with(":+") => (Test::Alternative(!empty), &op[2..]),
        _ if op.starts_with('+') => (Test::Alternative(value.is_some()), &op[1..]),
        _ => return Err(format!("'${{{expr}}}': unknown operator {op:?}")),
    };
    match test {
        Test::Default(true) | Test::Alternative(true) => interpolate(arg, vars, unset),
        Test::Default(false) => Ok(value.unwrap_or_default().to_owned()),
        Test::Alternative(false) => Ok(String::new()),
        Test::Required(true) => Err(format!(
            "variable {name} is required: {}",
            if arg.is_empty() { "not set" } else { arg }
        )),
        Test::Required(false) => Ok(value.unwrap_or_default().to_owned()),
    }
}

enum Test {
    Default(bool),
    Required(bool),
    Alternative(bool),
}

fn shorten(text: &str) -> String {
    text.chars().take(60).collect()
}

/// Parses a `.env` / `env_file` file: `KEY=VALUE` lines (optionally `export KEY=VALUE`),
/// `#` comments, blank lines, single-quoted (literal) or double-quoted (with `\n`, `\"`)
/// values, and a bare `KEY` (which takes the process environment's value, if any). Errors
/// name the line.
pub fn parse_env_file(
    text: &str,
    process: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            if let Some(v) = process.get(line) {
                out.push((line.to_owned(), v.clone()));
            }
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("line {}: {key:?} is not a variable name", n + 1));
        }
        out.push((
            key.to_owned(),
            unquote(value.trim_start()).map_err(|e| format!("line {}: {e}", n + 1))?,
        ));
    }
    Ok(out)
}

fn unquote(value: &str) -> Result<String, String> {
    if let Some(inner) = value.strip_prefix('\'') {
        let end = inner.find('\'').ok_or("unclosed single quote")?;
        return Ok(inner[..end].to_owned());
    }
    if let Some(inner) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unclosed double quote".to_owned());
    }
    // An unquoted value ends at " #" (an inline comment).
    let value = value.split(" #").next().unwrap_or_default();
    Ok(value.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        Variables {
            process: BTreeMap::from([
                ("SHELL_ONLY".into(), "shell".into()),
                ("BOTH".into(), "from-shell".into()),
            ]),
            dotenv: BTreeMap::from([
                ("BOTH".into(), "from-file".into()),
                ("EMPTY".into(), String::new()),
                ("PORT".into(), "8000".into()),
            ]),
        }
    }

    fn run(text: &str) -> (Result<String, String>, Vec<String>) {
        let mut unset = Unset::default();
        let r = interpolate(text, &vars(), &mut unset);
        (r, unset.names.into_iter().collect())
    }

    #[test]
    fn forms_of_substitution() {
        assert_eq!(run("${BOTH}").0.as_deref(), Ok("from-shell"));
        assert_eq!(run("$PORT/x").0.as_deref(), Ok("8000/x"));
        assert_eq!(run("a$$b").0.as_deref(), Ok("a$b"));
        assert_eq!(run("${EMPTY:-d}").0.as_deref(), Ok("d"));
        assert_eq!(run("${EMPTY-d}").0.as_deref(), Ok(""));
        assert_eq!(run("${NOPE-d}").0.as_deref(), Ok("d"));
        assert_eq!(run("${NOPE:-${PORT}}").0.as_deref(), Ok("8000"));
        assert_eq!(run("${PORT:+set}").0.as_deref(), Ok("set"));
        assert_eq!(run("${NOPE:+set}").0.as_deref(), Ok(""));
        assert_eq!(run("cost $ 5").0.as_deref(), Ok("cost $ 5"));
        let (r, unset) = run("x${NOPE}y");
        assert_eq!(r.as_deref(), Ok("xy"));
        assert_eq!(unset, vec!["NOPE".to_owned()]);
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            run("${NOPE:?give it}").0,
            Err("variable NOPE is required: give it".into())
        );
        assert!(run("${BOTH").0.unwrap_err().contains("unclosed"));
        assert!(run("${BOTH/x}").0.unwrap_err().contains("unknown operator"));
    }

    #[test]
    fn env_files() {
        let process = BTreeMap::from([("FROM_SHELL".to_owned(), "s".to_owned())]);
        let text = "# c\n\nA=1\nexport B = two words # note\nC='lit $X'\nD=\"q\\n\\\"\"\nFROM_SHELL\nUNSET_BARE\nE=\n";
        let parsed = parse_env_file(text, &process).unwrap();
        let got: Vec<(&str, &str)> = parsed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A", "1"),
                ("B", "two words"),
                ("C", "lit $X"),
                ("D", "q\n\""),
                ("FROM_SHELL", "s"),
                ("E", "")
            ]
        );
        assert_eq!(
            parse_env_file("X='open\n", &process).unwrap_err(),
            "line 1: unclosed single quote"
        );
        assert!(
            parse_env_file("two words=1\n", &process)
                .unwrap_err()
                .starts_with("line 1:")
        );
    }
}
