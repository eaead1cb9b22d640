//! Reading a quick reader's tree into a type through the type's own serde derive, so that
//! defaults, unknown keys refused and each type's own checks are the full parser's: a node
//! gives its text borrowed, typed as `plain` typed it. Any refusal (a missing field, a text
//! where a number belongs) only sends the document to the full parser, which says why.
//!
//! `At<T>` is a value with the line and column where it starts, from either reader: from the
//! full parser's `Spanned<T>`, from this one directly. The raw forms of a file use it where a
//! check after the parse names a place.

use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, Error};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::{Kind, Node};

/// The newtype name `At<T>` asks for: this reader answers with (line, column, value); the
/// full parser knows no such name and hands itself on, and `At` then reads a `Spanned<T>`.
const AT_NAME: &str = "__mkplan_quick_yaml_at";

/// A value and where it starts in its file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub at: (u64, u64),
}

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AtVisitor<T>(PhantomData<T>);

        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for AtVisitor<T> {
            type Value = At<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a value")
            }

            /// The full parser: its own span-aware wrapper says where.
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
                Ok(At {
                    value: spanned.value,
                    at: (spanned.referenced.line(), spanned.referenced.column()),
                })
            }

            /// The quick reader: line, column, value.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let missing = || de::Error::custom("a located value");
                let line = seq.next_element()?.ok_or_else(missing)?;
                let column = seq.next_element()?.ok_or_else(missing)?;
                let value = seq.next_element()?.ok_or_else(missing)?;
                Ok(At {
                    value,
                    at: (line, column),
                })
            }
        }

        deserializer.deserialize_newtype_struct(AT_NAME, AtVisitor(PhantomData))
    }
}

impl<'de> Deserializer<'de> for &Node<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            Kind::Text(text) => visitor.visit_borrowed_str(text),
            Kind::Bool(value) => visitor.visit_bool(*value),
            Kind::Number(value) => visitor.visit_u64(*value),
            Kind::Sequence(items) => visitor.visit_seq(Items(items.iter())),
            Kind::Mapping(entries) => visitor.visit_map(Entries {
                entries: entries.iter(),
                value: None,
            }),
        }
    }

    /// No node is a null: a value that is there is `Some`.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == AT_NAME {
            return visitor.visit_seq(Located {
                node: self,
                field: 0,
            });
        }
        visitor.visit_newtype_struct(self)
    }

    /// A struct only from a mapping: serde's derives would take a sequence too, which the full
    /// parser refuses.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if !matches!(self.kind, Kind::Mapping(_)) {
            return Err(de::Error::custom("a struct other than a mapping"));
        }
        self.deserialize_any(visitor)
    }

    /// Only unit variants written as a word (`type: operational`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let Kind::Text(word) = &self.kind else {
            return Err(de::Error::custom("an enum other than a word"));
        };
        visitor.visit_enum(BorrowedStrDeserializer::new(word))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct Items<'b, 'de>(std::slice::Iter<'b, Node<'de>>);

impl<'de> SeqAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        self.0.next().map(|node| seed.deserialize(node)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'b, 'de> {
    entries: std::slice::Iter<'b, (&'de str, Node<'de>)>,
    value: Option<&'b Node<'de>>,
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value before its key"))?;
        seed.deserialize(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// What `At<T>` reads from this reader: line, column, then the value.
struct Located<'b, 'de> {
    node: &'b Node<'de>,
    field: u8,
}

impl<'de> SeqAccess<'de> for Located<'_, 'de> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        use de::IntoDeserializer;
        self.field += 1;
        match self.field {
            1 => seed
                .deserialize(u64::from(self.node.line).into_deserializer())
                .map(Some),
            2 => seed
                .deserialize(u64::from(self.node.column).into_deserializer())
                .map(Some),
            3 => seed.deserialize(self.node).map(Some),
            _ => Ok(None),
        }
    }
}
