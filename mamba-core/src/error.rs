//! The one error type of mamba-core. Every failure names what was wrong and where;
//! nothing here allocates, so messages carry fixed-capacity names.

use core::fmt;

/// A tensor or key name carried inside an error (truncated to fit).
pub type Name = heapless::String<64>;

/// Make a [`Name`] from any string, cutting it at a char boundary if too long.
pub fn name(s: &str) -> Name {
    let mut out = Name::new();
    for ch in s.chars() {
        if out.push(ch).is_err() {
            break;
        }
    }
    out
}

/// Everything that can go wrong in mamba-core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before a structure they announce. `what` says which structure.
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Byte offset where it started.
        offset: u64,
    },
    /// The file does not start with the GGUF magic.
    BadMagic,
    /// A GGUF version this reader does not understand.
    UnsupportedVersion(u32),
    /// A count, length or size that cannot be right for this file.
    AbsurdSize {
        /// What was being counted.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// A metadata value of an unknown type code.
    BadValueType {
        /// The key.
        key: Name,
        /// The type code found.
        code: u32,
    },
    /// A string that is not UTF-8.
    BadUtf8 {
        /// Byte offset of the string.
        offset: u64,
    },
    /// `general.architecture` is not "mamba".
    WrongArchitecture(Name),
    /// A required metadata key is absent.
    MissingKey(Name),
    /// A metadata key holds a value of the wrong type or range.
    BadKey(Name),
    /// A required tensor is absent.
    MissingTensor(Name),
    /// A tensor has the wrong shape. Shapes are row-major (outermost first).
    TensorShape {
        /// Tensor name.
        name: Name,
        /// Expected (rows, cols).
        expected: [u64; 2],
        /// Found (rows, cols).
        found: [u64; 2],
    },
    /// A tensor of a type this build cannot use (or in a place that needs f32).
    TensorType {
        /// Tensor name.
        name: Name,
        /// The ggml type code.
        code: u32,
    },
    /// A tensor's data lies (partly) outside the file.
    TensorOutOfBounds(Name),
    /// A tensor's data is not aligned for its element type.
    Misaligned(Name),
    /// The configuration is inconsistent; the message says how.
    Config(&'static str),
    /// A caller-provided buffer is too small or the wrong length.
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// Length needed.
        needed: usize,
        /// Length given.
        got: usize,
    },
    /// A token id outside the vocabulary.
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: u32,
    },
    /// A state blob that is not one (magic, version or length wrong).
    BadState(&'static str),
    /// A state blob saved from a model of another shape or with other weights.
    StateMismatch,
    /// Invalid sampling parameters.
    Sampling(&'static str),
    /// Big-endian machines are not supported (GGUF is little-endian).
    BigEndian,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, offset } => {
                write!(
                    f,
                    "file truncated: {what} at byte {offset} runs past the end"
                )
            }
            Error::BadMagic => write!(f, "not a GGUF file (bad magic)"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported GGUF version {v} (2 and 3 are)"),
            Error::AbsurdSize { what, value } => write!(f, "absurd {what}: {value}"),
            Error::BadValueType { key, code } => {
                write!(f, "metadata key '{key}' has unknown value type {code}")
            }
            Error::BadUtf8 { offset } => write!(f, "string at byte {offset} is not UTF-8"),
            Error::WrongArchitecture(a) => {
                write!(
                    f,
                    "wrong architecture '{a}': this runtime runs 'mamba' models"
                )
            }
            Error::MissingKey(k) => write!(f, "missing metadata key '{k}'"),
            Error::BadKey(k) => write!(f, "metadata key '{k}' has a wrong type or value"),
            Error::MissingTensor(n) => write!(f, "missing tensor '{n}'"),
            Error::TensorShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor '{name}' has shape {}x{}, expected {}x{}",
                found[0], found[1], expected[0], expected[1]
            ),
            Error::TensorType { name, code } => {
                write!(f, "tensor '{name}' has unsupported type {code} here")
            }
            Error::TensorOutOfBounds(n) => write!(f, "tensor '{n}' data lies outside the file"),
            Error::Misaligned(n) => write!(f, "tensor '{n}' data is misaligned for its type"),
            Error::Config(m) => write!(f, "invalid model config: {m}"),
            Error::BufferSize { what, needed, got } => {
                write!(f, "{what} buffer has {got} elements, needs {needed}")
            }
            Error::TokenOutOfRange { token, vocab } => {
                write!(f, "token id {token} out of range (vocabulary {vocab})")
            }
            Error::BadState(m) => write!(f, "invalid state blob: {m}"),
            Error::StateMismatch => {
                write!(
                    f,
                    "state blob belongs to another model (config or weights differ)"
                )
            }
            Error::Sampling(m) => write!(f, "invalid sampling parameters: {m}"),
            Error::BigEndian => write!(f, "big-endian targets are not supported"),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Result with [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
