//! The operators who may command: a TOML file (`ground.operators_file`) of names and the SHA-256
//! of each one's token, never the tokens themselves. A request's bearer token is hashed and
//! compared with every entry in constant time; the name it matches is the one the audit records.

use std::path::Path;

use kestrel_link::hex;
use kestrel_mission::{MissionError, MissionFile};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorsFile {
    operator: Spanned<Vec<OperatorEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorEntry {
    name: Spanned<String>,
    /// 64 hexadecimal digits: SHA-256 of the operator's token.
    token_sha256: Spanned<String>,
}

#[derive(Debug, Clone)]
struct Operator {
    name: String,
    token_sha256: [u8; 32],
}

/// The operators of one ground, from its operators file.
#[derive(Debug, Clone)]
pub struct Operators {
    operators: Vec<Operator>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Operators {
    /// Reads and checks the operators file: errors name its path, line and key.
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        let file = MissionFile::read(path)?;
        let parsed: OperatorsFile = file.parse_document()?;
        if parsed.operator.get_ref().is_empty() {
            return Err(file.error_at(parsed.operator.span(), "operator", "list at least one operator"));
        }
        let mut operators: Vec<Operator> = Vec::new();
        for (i, entry) in parsed.operator.get_ref().iter().enumerate() {
            let name = entry.name.get_ref().trim();
            let valid =
                !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_alphanumeric() || "-_. ".contains(c));
            if !valid {
                let message = "a name of 1 to 64 letters, digits, spaces, `-`, `_` or `.`";
                return Err(file.error_at(entry.name.span(), &format!("operator[{i}].name"), message));
            }
            if operators.iter().any(|o| o.name == name) {
                let message = format!("operator `{name}` is listed twice");
                return Err(file.error_at(entry.name.span(), &format!("operator[{i}].name"), message));
            }
            let Some(token_sha256) = hex::decode::<32>(entry.token_sha256.get_ref()) else {
                let message = "the SHA-256 of the operator's token: 64 hexadecimal digits";
                return Err(file.error_at(entry.token_sha256.span(), &format!("operator[{i}].token_sha256"), message));
            };
            operators.push(Operator { name: name.to_owned(), token_sha256 });
        }
        Ok(Self { operators })
    }

    /// The name of the operator whose token this is.
    pub fn authenticate(&self, presented: &str) -> Option<&str> {
        let presented = digest(presented);
        // every entry compared in full, so the time taken says nothing about which came close
        let mut found = None;
        for operator in &self.operators {
            let differs = operator.token_sha256.iter().zip(&presented).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if differs == 0 {
                found = Some(operator.name.as_str());
            }
        }
        found
    }

    /// Operators with these names and tokens (for benchmarks and tests that build a service).
    pub fn from_tokens<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            operators: entries
                .into_iter()
                .map(|(name, token)| Operator { name: name.to_owned(), token_sha256: digest(token) })
                .collect(),
        }
    }
}

/// A new token for operator `name`, its hash appended to the operators file at `path` (made if
/// missing): the token is returned to be handed to the operator, and is stored nowhere.
pub fn add_operator(path: &Path, name: &str) -> anyhow::Result<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let token = hex::encode(&secret);
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Operators who may command: each name with the SHA-256 of its token (`ground operator-token`).\n"
                .to_owned()
        }
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let entry = format!(
        "\n[[operator]]\nname = {}\ntoken_sha256 = \"{}\"\n",
        toml::Value::from(name),
        hex::encode(&digest(&token))
    );
    let written = format!("{existing}{entry}");
    std::fs::write(path, &written).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    // the file as written must load (a name it refuses is refused now, not at the next serve)
    if let Err(e) = Operators::load(path) {
        std::fs::write(path, existing).map_err(|e| anyhow::anyhow!("cannot restore {}: {e}", path.display()))?;
        anyhow::bail!("{e}");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_operator_and_no_other_token_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("operators.toml");
        let ada = add_operator(&path, "ada").expect("ada");
        let grace = add_operator(&path, "grace").expect("grace");
        let operators = Operators::load(&path).expect("load");
        assert_eq!(operators.authenticate(&ada), Some("ada"));
        assert_eq!(operators.authenticate(&grace), Some("grace"));
        assert_eq!(operators.authenticate(&ada[..63]), None);
        assert_eq!(operators.authenticate(""), None);
        assert!(!std::fs::read_to_string(&path).expect("file").contains(&ada), "the token itself is not stored");
        assert!(add_operator(&path, "ada").is_err(), "a name twice");
        assert!(Operators::load(&path).is_ok(), "a refused addition leaves the file as it was");
    }

    #[test]
    fn a_bad_operators_file_is_refused_naming_the_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("operators.toml");
        std::fs::write(&path, "[[operator]]\nname = \"ada\"\ntoken_sha256 = \"12ab\"\n").expect("write");
        let error = Operators::load(&path).expect_err("short hash").to_string();
        assert!(error.contains("operators.toml") && error.contains(":3") && error.contains("token_sha256"), "{error}");
        std::fs::write(&path, "[[operator]]\nname = \"ada\"\ntoken = \"x\"\n").expect("write");
        let error = Operators::load(&path).expect_err("unknown key").to_string();
        assert!(error.contains("token"), "{error}");
    }
}
