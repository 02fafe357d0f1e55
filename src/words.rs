//! Enums whose values are a fixed set of words: a status, a kind, an action. The word
//! is what JSON, CSV, the catalog and messages carry, so each variant names its word
//! once and serde, `as_str`, `Display`, `FromStr` and (on request) SQL and clap all use
//! that one spelling. A misspelt state then fails to compile instead of never matching.

/// A word that names no variant of the enum it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{word}' is not a {what}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}

/// Declares an enum of words: `Variant = "word"` per line.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$variant_meta:meta])* $variant:ident = $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_meta])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::words::UnknownWord;

            fn from_str(word: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == word)
                    .ok_or_else(|| $crate::words::UnknownWord {
                        what: $what,
                        word: word.to_string(),
                    })
            }
        }
    };
}

/// Stores a word enum as its word in a TEXT column, as the catalog always has.
macro_rules! stored_as_word {
    ($name:ty) => {
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

/// Lets a command-line flag take a word enum, so help, man pages and completions list
/// its words: every word, or only the variants named after the type.
macro_rules! flag_word {
    ($name:ty) => {
        $crate::words::flag_word!($name: Self::ALL);
    };
    ($name:ty: $($variant:ident),+) => {
        $crate::words::flag_word!($name: &[$(Self::$variant),+]);
    };
    ($name:ty: $variants:expr) => {
        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                $variants
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.as_str()))
            }
        }
    };
}

pub(crate) use {flag_word, stored_as_word, word_enum};

#[cfg(test)]
mod tests {
    word_enum! {
        enum Sample ("sample") {
            One = "one",
            TwoWords = "two-words",
        }
    }
    stored_as_word!(Sample);

    #[test]
    fn serde_sql_and_text_agree_on_each_word() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for value in Sample::ALL {
            let json = serde_json::to_string(value).unwrap();
            assert_eq!(json, format!("\"{value}\""));
            assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), *value);
            assert_eq!(value.as_str().parse::<Sample>(), Ok(*value));
            let back: Sample = conn.query_row("SELECT ?1", [value], |r| r.get(0)).unwrap();
            assert_eq!(back, *value);
        }
    }

    #[test]
    fn an_unknown_word_is_refused_everywhere() {
        let err = "three".parse::<Sample>().unwrap_err();
        assert_eq!(err.to_string(), "'three' is not a sample");
        assert!(serde_json::from_str::<Sample>("\"three\"").is_err());
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        assert!(
            conn.query_row("SELECT 'three'", [], |r| r.get::<_, Sample>(0))
                .is_err()
        );
    }
}
