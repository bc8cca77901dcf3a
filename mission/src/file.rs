//! Reading the mission file: sections, spans and located errors.
//!
//! Each crate owns the schema of its own section and deserializes only the sections it needs; this
//! module owns what they share: reading the file, rejecting unknown top-level sections (a typo in a
//! section name must never be silently ignored), and turning any mistake into one error that names
//! the file, the line, the column and the dotted key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Every top-level section a mission file may have. Each is owned by one crate; see docs/mission.md.
pub const SECTIONS: &[&str] = &["mission", "link", "flight", "ground", "thermal"];

/// A mistake in a mission file, located as precisely as the mistake allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissionError {
    pub file: PathBuf,
    /// 1-based line and column of the offending text; `None` when the file could not be read.
    pub position: Option<(usize, usize)>,
    /// Dotted path of the offending key (`flight.intra_threads`), when there is one.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for MissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for MissionError {}

/// The text of a mission file, kept so that later checks (a key file that does not exist, a value
/// out of range) can still point at the line that caused them.
#[derive(Debug, Clone)]
pub struct MissionFile {
    path: PathBuf,
    text: String,
}

/// The first pass: only which sections exist, so that an unknown one is an error of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read only to validate the section names
struct Sections {
    mission: IgnoredAny,
    link: Option<IgnoredAny>,
    flight: Option<IgnoredAny>,
    ground: Option<IgnoredAny>,
    thermal: Option<IgnoredAny>,
}

impl MissionFile {
    /// Reads a mission file; an unreadable file is an error that names it.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, MissionError> {
        let path = path.as_ref().to_path_buf();
        let text = std::fs::read_to_string(&path).map_err(|e| MissionError {
            file: path.clone(),
            position: None,
            key: None,
            message: format!("cannot read the mission file: {e}"),
        })?;
        Ok(Self { path, text })
    }

    /// A mission file held in memory (tests, generated missions); `path` is what errors name and
    /// where relative paths in it are resolved from.
    pub fn from_text(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self { path: path.into(), text: text.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deserializes the view `T` of this file: a struct that names the sections its crate needs.
    /// The whole file is checked first: bad TOML and unknown top-level sections are reported even
    /// when `T` does not look at them.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, MissionError> {
        let table = DeTable::parse(&self.text).map_err(|e| self.toml_error(&e, None))?;
        self.deserialize::<Sections>(&table)?;
        self.deserialize::<T>(&table)
    }

    /// Deserializes the whole file as `T`, with the same located errors but without the mission
    /// sections' check: for the other TOML files a mission names (the model manifest).
    pub fn parse_document<T: DeserializeOwned>(&self) -> Result<T, MissionError> {
        let table = DeTable::parse(&self.text).map_err(|e| self.toml_error(&e, None))?;
        self.deserialize::<T>(&table)
    }

    fn deserialize<T: DeserializeOwned>(&self, table: &Spanned<DeTable<'_>>) -> Result<T, MissionError> {
        T::deserialize(toml::de::Deserializer::from(table.clone())).map_err(|e| self.toml_error(&e, Some(table)))
    }

    /// A path written in the mission file, resolved against the file's own folder.
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if relative.is_relative() => dir.join(relative),
            _ => relative.to_path_buf(),
        }
    }

    /// Resolves a key that names a file (a key, a token, a model) and checks that the file is there.
    pub fn existing_file(&self, key: &str, value: &Spanned<PathBuf>) -> Result<PathBuf, MissionError> {
        let resolved = self.resolve(value.get_ref());
        match std::fs::metadata(&resolved) {
            Ok(meta) if meta.is_file() => Ok(resolved),
            Ok(_) => Err(self.error_at(value.span(), key, format!("`{}` is not a file", resolved.display()))),
            Err(e) => Err(self.error_at(value.span(), key, format!("cannot open `{}`: {e}", resolved.display()))),
        }
    }

    /// Reads the 256-bit key in the key file that `value` names (under the dotted `key`).
    pub fn key_file(&self, key: &str, value: &Spanned<PathBuf>) -> Result<[u8; 32], MissionError> {
        let path = self.existing_file(key, value)?;
        kestrel_link::security::read_key_file(&path).map_err(|e| self.error_at(value.span(), key, e.to_string()))
    }

    /// An error about the value at `span` (from a [`Spanned`] field) under the dotted `key`.
    pub fn error_at(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> MissionError {
        MissionError {
            file: self.path.clone(),
            position: Some(self.line_column(span.start)),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    fn toml_error(&self, error: &toml::de::Error, table: Option<&Spanned<DeTable<'_>>>) -> MissionError {
        let span = error.span();
        let message = error.message().trim_end().to_owned();
        let key = match (&span, table) {
            (Some(span), Some(table)) => key_at(table.get_ref(), span),
            // a syntax error has no table to look in; a duplicate key's span is the key itself
            (Some(span), None) if message.starts_with("duplicate key") => self.written_key_at(span),
            _ => None,
        };
        MissionError {
            file: self.path.clone(),
            position: Some(self.line_column(span.map_or(0, |s| s.start))),
            key,
            message,
        }
    }

    /// The dotted path of the key written at `span`, read from the text (for errors the parser
    /// finds before there is a table): the table header above it, then the key as written on its
    /// line (`a.b = 1` gives both parts); a header itself names its table.
    fn written_key_at(&self, span: &Range<usize>) -> Option<String> {
        let start = self.text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text.get(start..span.end)?.trim_start();
        let header = |line: &str| {
            let line = line.trim();
            let array = line.starts_with("[[");
            let name = line.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_owned();
            (array, name)
        };
        if line.starts_with('[') {
            return Some(header(line).1);
        }
        // inside an inline table only the key itself is named
        let written = if line.contains('=') { self.text.get(span.clone())? } else { line };
        let above = &self.text[..start];
        let table = above.lines().rev().map(str::trim_start).find(|l| l.starts_with('['));
        Some(match table.map(header) {
            None => written.to_owned(),
            Some((false, name)) => format!("{name}.{written}"),
            Some((true, name)) => {
                // the index of this entry of an array of tables
                let entries = above.lines().filter(|l| header(l) == (true, name.clone())).count();
                format!("{name}[{}].{written}", entries.saturating_sub(1))
            }
        })
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

/// The dotted path of the innermost key whose name or value covers `span`. A table's own span is
/// only its header, so every table is searched, not just those whose span covers the error.
fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let covers = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end.max(outer.start + 1);
    table.iter().find_map(|(key, value)| {
        let name = key.get_ref().to_string();
        let inner = match value.get_ref() {
            DeValue::Table(t) => key_at(t, span).map(|rest| format!("{name}.{rest}")),
            DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let nested = match item.get_ref() {
                    DeValue::Table(t) => key_at(t, span).map(|rest| format!("{name}[{i}].{rest}")),
                    _ => None,
                };
                nested.or_else(|| covers(item.span()).then(|| format!("{name}[{i}]")))
            }),
            _ => None,
        };
        inner.or_else(|| (covers(key.span()) || covers(value.span())).then_some(name))
    })
}

/// The `[mission]` section: who is flying. Read by every binary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissionInfo {
    /// Human name of the mission, shown in logs, the console and reports.
    pub name: String,
    /// Epoch of the simulated clock in the demo and the tests (RFC 3339, UTC).
    #[serde(deserialize_with = "rfc3339")]
    pub epoch: String,
}

impl MissionInfo {
    /// The epoch as milliseconds since the Unix epoch (fractions of a second are ignored).
    pub fn epoch_ms(&self) -> i64 {
        let number = |r: Range<usize>| self.epoch.get(r).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        let (year, month, day) = (number(0..4), number(5..7), number(8..10));
        // days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil)
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        ((days * 24 + number(11..13)) * 60 + number(14..16)) * 60_000 + number(17..19) * 1000
    }
}

fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if is_rfc3339_utc(&text) {
        Ok(text)
    } else {
        Err(serde::de::Error::custom(format!("`{text}` is not an RFC 3339 UTC time such as 2026-03-20T00:00:00Z")))
    }
}

fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b.last() == Some(&b'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct View {
        mission: MissionInfo,
        flight: Option<Section>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        threads: u32,
        #[serde(default)]
        stations: Vec<Station>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Station {
        name: String,
        elevation_deg: f64,
    }

    const HEAD: &str = "[mission]\nname = \"t\"\nepoch = \"2026-03-20T00:00:00Z\"\n";

    fn error(text: &str) -> MissionError {
        MissionFile::from_text("m.toml", text).parse::<View>().expect_err("the file is malformed")
    }

    #[test]
    fn a_good_file_parses() {
        let text = format!("{HEAD}[flight]\nthreads = 2\n[[flight.stations]]\nname = \"a\"\nelevation_deg = 5.0\n");
        let view: View = MissionFile::from_text("m.toml", text).parse().expect("valid");
        assert_eq!(view.mission.name, "t");
        let flight = view.flight.expect("flight section");
        assert_eq!((flight.threads, flight.stations[0].name.as_str()), (2, "a"));
        assert_eq!(flight.stations[0].elevation_deg, 5.0);
    }

    #[test]
    fn wrong_type_names_line_column_and_key() {
        let e = error(&format!("{HEAD}[flight]\nthreads = \"two\"\n"));
        assert_eq!((e.position, e.key.as_deref()), (Some((5, 11)), Some("flight.threads")));
        assert!(e.message.contains("invalid type"), "{e}");
        assert!(e.to_string().starts_with("m.toml:5:11: key `flight.threads`: invalid type"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = error(&format!("{HEAD}[flight]\nthreads = 2\nthrads = 3\n"));
        assert_eq!((e.position, e.key.as_deref()), (Some((6, 1)), Some("flight.thrads")));
        assert!(e.message.contains("unknown field `thrads`"), "{e}");
    }

    #[test]
    fn unknown_section_is_an_error_even_when_no_view_reads_it() {
        let e = error(&format!("{HEAD}[fligth]\nthreads = 2\n"));
        assert_eq!((e.position, e.key.as_deref()), (Some((4, 2)), Some("fligth")));
        assert!(e.message.contains("unknown field `fligth`, expected one of"), "{e}");
    }

    #[test]
    fn missing_section_and_missing_key_are_named() {
        let e = error("[flight]\nthreads = 2\n");
        assert!(e.message.contains("missing field `mission`"), "{e}");
        let e = error(&format!("{HEAD}[flight]\nstations = []\n"));
        assert_eq!(e.key.as_deref(), Some("flight"));
        assert!(e.message.contains("missing field `threads`"), "{e}");
    }

    #[test]
    fn a_duplicate_key_is_named_with_its_table() {
        let e = error(&format!("{HEAD}[flight]\nthreads = 2\nthreads = 3\n"));
        assert_eq!((e.position, e.key.as_deref()), (Some((6, 1)), Some("flight.threads")), "{e}");
        assert!(e.to_string().starts_with("m.toml:6:1: key `flight.threads`: duplicate key"), "{e}");
        // in an entry of an array of tables, and a dotted key
        let e = error(&format!(
            "{HEAD}[flight]\nthreads = 1\n[[flight.stations]]\nname = \"a\"\n[[flight.stations]]\nname = \"b\"\nname = \"c\"\n"
        ));
        assert_eq!((e.position, e.key.as_deref()), (Some((10, 1)), Some("flight.stations[1].name")), "{e}");
        let e = error(&format!("{HEAD}[flight]\nx.y = 1\nx.y = 2\n"));
        assert_eq!(e.key.as_deref(), Some("flight.x.y"), "{e}");
        // a table declared twice names the table
        let e = error(&format!("{HEAD}[flight]\nthreads = 1\n[flight]\nthreads = 2\n"));
        assert_eq!((e.position.map(|p| p.0), e.key.as_deref()), (Some(6), Some("flight")), "{e}");
        // a key before any table
        let e = error(&format!("name = \"a\"\nname = \"b\"\n{HEAD}"));
        assert_eq!(e.key.as_deref(), Some("name"), "{e}");
    }

    #[test]
    fn bad_toml_points_at_the_line() {
        let e = error(&format!("{HEAD}[flight\nthreads = 2\n"));
        assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
    }

    #[test]
    fn keys_inside_arrays_of_tables_carry_their_index() {
        let e = error(&format!(
            "{HEAD}[flight]\nthreads = 1\n[[flight.stations]]\nname = \"a\"\nelevation_deg = 1.0\n[[flight.stations]]\nname = \"b\"\nelevation_deg = \"high\"\n"
        ));
        assert_eq!(e.key.as_deref(), Some("flight.stations[1].elevation_deg"), "{e}");
        assert_eq!(e.position, Some((11, 17)));
    }

    #[test]
    fn the_epoch_in_unix_milliseconds() {
        let info = |epoch: &str| MissionInfo { name: "t".into(), epoch: epoch.into() };
        assert_eq!(info("1970-01-01T00:00:00Z").epoch_ms(), 0);
        assert_eq!(info("2026-03-20T00:00:00Z").epoch_ms(), 1_773_964_800_000);
        assert_eq!(info("2000-02-29T12:34:56Z").epoch_ms(), 951_827_696_000);
    }

    #[test]
    fn a_bad_epoch_is_refused_with_its_key() {
        let e = error("[mission]\nname = \"t\"\nepoch = \"yesterday\"\n");
        assert_eq!(e.key.as_deref(), Some("mission.epoch"), "{e}");
        assert!(e.message.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = MissionFile::from_text(dir.path().join("m.toml"), HEAD);
        let value = Spanned::new(2..9, PathBuf::from("keys/absent.key"));
        let e = file.existing_file("link.security.key_file", &value).expect_err("absent");
        assert_eq!((e.position, e.key.as_deref()), (Some((1, 3)), Some("link.security.key_file")));
        assert!(e.message.contains("absent.key"), "{e}");
    }

    #[test]
    fn rfc3339_is_checked() {
        assert!(is_rfc3339_utc("2026-03-20T00:00:00Z"));
        assert!(is_rfc3339_utc("2026-03-20T00:00:00.250Z"));
        assert!(!is_rfc3339_utc("2026-03-20 00:00:00"));
        assert!(!is_rfc3339_utc("yesterday"));
    }
}
