//! `RemotingCommand`: one request or answer of the remoting protocol.

use std::collections::BTreeMap;

/// Bit of `flag` set on an answer.
pub const FLAG_RESPONSE: i32 = 1;
/// Bit of `flag` set on a request that wants no answer.
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// How a frame's header is written: the high byte of the frame's second
/// word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    /// A JSON object (type 0).
    #[default]
    Json,
    /// RocketMQ's compact binary header (type 1).
    RocketMq,
}

/// The language of the peer that wrote a command (RocketMQ's
/// `LanguageCode`); the binary header carries its number, JSON its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LanguageCode {
    /// 0
    #[default]
    Java,
    /// 1
    Cpp,
    /// 2
    Dotnet,
    /// 3
    Python,
    /// 4
    Delphi,
    /// 5
    Erlang,
    /// 6
    Ruby,
    /// 7, and any name or number this crate does not know.
    Other,
    /// 8
    Http,
    /// 9
    Go,
    /// 10
    Php,
    /// 11
    Oms,
    /// 12
    Rust,
    /// 13
    NodeJs,
}

impl LanguageCode {
    const ALL: [(LanguageCode, &'static str); 14] = [
        (LanguageCode::Java, "JAVA"),
        (LanguageCode::Cpp, "CPP"),
        (LanguageCode::Dotnet, "DOTNET"),
        (LanguageCode::Python, "PYTHON"),
        (LanguageCode::Delphi, "DELPHI"),
        (LanguageCode::Erlang, "ERLANG"),
        (LanguageCode::Ruby, "RUBY"),
        (LanguageCode::Other, "OTHER"),
        (LanguageCode::Http, "HTTP"),
        (LanguageCode::Go, "GO"),
        (LanguageCode::Php, "PHP"),
        (LanguageCode::Oms, "OMS"),
        (LanguageCode::Rust, "RUST"),
        (LanguageCode::NodeJs, "NODE_JS"),
    ];

    /// The number the binary header carries.
    pub fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|(language, _)| *language == self)
            .expect("every language is in ALL") as u8
    }

    /// The language of a binary header's number; unknown numbers are
    /// `Other`.
    pub fn from_code(code: u8) -> Self {
        Self::ALL
            .get(usize::from(code))
            .map_or(LanguageCode::Other, |(language, _)| *language)
    }

    /// The name a JSON header carries.
    pub fn name(self) -> &'static str {
        Self::ALL[usize::from(self.code())].1
    }

    /// The language of a JSON header's name; unknown names are `Other`.
    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .iter()
            .find(|(_, known)| *known == name)
            .map_or(LanguageCode::Other, |(language, _)| *language)
    }
}

/// One request or answer: the header's fields and the body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    /// The request code, or the answer's response code.
    pub code: i32,
    /// The language of the peer that wrote it.
    pub language: LanguageCode,
    /// The writer's RocketMQ version number.
    pub version: i32,
    /// Pairs an answer with its request: an answer carries its request's.
    pub opaque: i32,
    /// Bits: [`FLAG_RESPONSE`], [`FLAG_ONEWAY`].
    pub flag: i32,
    /// Free text; on a failed answer, why it failed.
    pub remark: Option<String>,
    /// The request's or answer's named fields, all as strings
    /// (RocketMQ's custom header).
    pub ext_fields: BTreeMap<String, String>,
    /// How the header was (or will be) written.
    pub serialize_type: SerializeType,
    /// The body, often JSON; empty when there is none.
    pub body: Vec<u8>,
}

/// The version this server writes in its answers (RocketMQ 5.x's).
pub const VERSION: i32 = 474;

impl RemotingCommand {
    /// A request with `code` and header fields `ext_fields`.
    pub fn request(code: i32, ext_fields: BTreeMap<String, String>) -> Self {
        Self {
            code,
            language: LanguageCode::Rust,
            version: VERSION,
            ext_fields,
            ..Self::default()
        }
    }

    /// The answer to `self` with `code`: the same opaque and header form,
    /// the response flag set.
    pub fn answer(&self, code: i32, remark: Option<String>) -> Self {
        Self {
            code,
            language: LanguageCode::Rust,
            version: VERSION,
            opaque: self.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: BTreeMap::new(),
            serialize_type: self.serialize_type,
            body: Vec::new(),
        }
    }

    /// Whether this is an answer.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this is a request that wants no answer.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The header field `name`, if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.ext_fields.get(name).map(String::as_str)
    }
}
