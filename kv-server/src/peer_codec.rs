//! The encoding of append-entries and vote bodies between nodes: postcard
//! (compact, binary, serde-driven) by default, JSON for a peer that does
//! not speak it.
//!
//! The request's `Content-Type` names its encoding and the answer uses the
//! same one, so a node never has to guess what its peer reads. A node that
//! only reads JSON answers a postcard request 415 (axum's `Json` extractor
//! does), and the sender then speaks JSON to it from that answer on.
//!
//! Postcard is not self-describing: every field is written in order and
//! read back by position, so a type sent this way must not skip fields
//! (`skip_serializing_if`) nor need the format to describe itself
//! (untagged or internally tagged enums). The round-trip test below sends
//! every command kind and would fail on either.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use schemas::api::ErrorCode;

use crate::api::error::ApiError;

/// The media type of a postcard body.
pub const POSTCARD: &str = "application/x-postcard";
/// The media type of a JSON body.
const JSON: &str = "application/json";

/// How a peer request's body, and so its answer, is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Postcard,
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names, if it is one of ours.
    pub fn of(headers: &HeaderMap) -> Option<Encoding> {
        let media = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let media = media.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(POSTCARD) {
            Some(Encoding::Postcard)
        } else if media.eq_ignore_ascii_case(JSON) {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Postcard => POSTCARD,
            Encoding::Json => JSON,
        }
    }

    /// `value` in this encoding.
    pub fn encode<T: Serialize>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Encoding::Postcard => postcard::to_stdvec(value).map_err(CodecError::Postcard),
            Encoding::Json => serde_json::to_vec(value).map_err(CodecError::Json),
        }
    }

    /// A value of `T` from `bytes` in this encoding.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Encoding::Postcard => postcard::from_bytes(bytes).map_err(CodecError::Postcard),
            Encoding::Json => serde_json::from_slice(bytes).map_err(CodecError::Json),
        }
    }
}

/// A body that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("postcard: {0}")]
    Postcard(postcard::Error),
    #[error("JSON: {0}")]
    Json(serde_json::Error),
}

/// A peer request's body, decoded as its `Content-Type` says; the handler
/// answers through [`PeerReply`] in the same encoding.
pub struct PeerRequest<T>(pub Encoding, pub T);

impl<S, T> FromRequest<S> for PeerRequest<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let path = request.uri().path().to_string();
        let Some(encoding) = Encoding::of(request.headers()) else {
            let message = format!("{path} takes a body of {POSTCARD} or {JSON}");
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ApiError::new(ErrorCode::InvalidBody, message),
            )
                .into_response());
        };
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match encoding.decode(&body) {
            Ok(value) => Ok(PeerRequest(encoding, value)),
            Err(error) => {
                let message = format!(
                    "the body of {path} ({} bytes) does not decode: {error}",
                    body.len()
                );
                Err(ApiError::new(ErrorCode::InvalidBody, message).into_response())
            }
        }
    }
}

/// A peer answer, in the encoding of the request it answers.
pub struct PeerReply<T>(pub Encoding, pub T);

impl<T: Serialize> IntoResponse for PeerReply<T> {
    fn into_response(self) -> Response {
        let PeerReply(encoding, value) = self;
        match encoding.encode(&value) {
            Ok(bytes) => (
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static(encoding.content_type()),
                )],
                bytes,
            )
                .into_response(),
            Err(error) => {
                let message = format!("the answer could not be encoded: {error}");
                ApiError::new(ErrorCode::Internal, message).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::RaftError;
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, Vote};
    use uuid::Uuid;

    use super::*;
    use crate::types::{
        Command, Compare, CompareOp, CompareTarget, Condition, Entry, Node, NodeId, Op, Txn, TxnOp,
        TypeConfig,
    };

    fn command(op: Op, idempotency_key: Option<Uuid>) -> Command {
        Command {
            timestamp_ms: 1_700_000_000_000,
            idempotency_key,
            request_hash: idempotency_key.map(|_| 42),
            op,
        }
    }

    /// Every kind of command, with its optional fields both set and unset.
    fn every_command() -> Vec<Command> {
        let put = |lease| Op::Put {
            key: "a/b".into(),
            value: "{\"n\":1}".into(),
            condition: Condition::Always,
            lease,
        };
        let txn = Op::Txn(Txn {
            compare: vec![Compare {
                key: "a/b".into(),
                target: CompareTarget::ModRevision(3),
                op: CompareOp::Equal,
            }],
            success: vec![
                TxnOp::Put {
                    key: "a/c".into(),
                    value: "2".into(),
                    lease: Some(9),
                },
                TxnOp::Put {
                    key: "a/d".into(),
                    value: "3".into(),
                    lease: None,
                },
            ],
            failure: vec![TxnOp::Delete { key: "a/c".into() }],
        });
        let singles = vec![
            command(put(None), None),
            command(put(Some(7)), Some(Uuid::new_v4())),
            command(
                Op::Delete {
                    key: "a/b".into(),
                    condition: Condition::Always,
                },
                None,
            ),
            command(txn, Some(Uuid::new_v4())),
            command(Op::LeaseExpire { id: 7 }, None),
            command(put(None), None).by_token(Some("9f86d081884c7d65")),
        ];
        let mut all = singles.clone();
        all.push(command(Op::Batch(singles), None));
        all
    }

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
            payload,
        }
    }

    fn round_trip<T>(encoding: Encoding, value: &T) -> T
    where
        T: Serialize + DeserializeOwned,
    {
        let bytes = encoding.encode(value).expect("encodes");
        encoding.decode(&bytes).expect("decodes")
    }

    /// An append-entries request carrying every kind of entry comes back
    /// equal from either encoding, and postcard's is the smaller.
    #[test]
    fn append_entries_round_trip_in_both_encodings() {
        let membership = Membership::new(
            vec![[1, 2, 3].into_iter().collect()],
            [
                (1, Node::default()),
                (2, Node::default()),
                (3, Node::default()),
            ]
            .into_iter()
            .collect::<std::collections::BTreeMap<NodeId, Node>>(),
        );
        let mut entries = vec![
            entry(1, EntryPayload::Blank),
            entry(2, EntryPayload::Membership(membership)),
        ];
        for (n, command) in every_command().into_iter().enumerate() {
            entries.push(entry(3 + n as u64, EntryPayload::Normal(command)));
        }
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 2), 0)),
            entries,
            leader_commit: Some(LogId::new(CommittedLeaderId::new(3, 1), 2)),
        };
        let sizes: Vec<usize> = [Encoding::Postcard, Encoding::Json]
            .into_iter()
            .map(|encoding| {
                let back = round_trip(encoding, &request);
                assert_eq!(back.entries, request.entries, "{encoding:?}");
                assert_eq!(back.vote, request.vote, "{encoding:?}");
                assert_eq!(back.prev_log_id, request.prev_log_id, "{encoding:?}");
                assert_eq!(back.leader_commit, request.leader_commit, "{encoding:?}");
                encoding.encode(&request).expect("encodes").len()
            })
            .collect();
        assert!(sizes[0] < sizes[1] / 2, "postcard {sizes:?}");
    }

    /// Answers and votes round-trip, errors included.
    #[test]
    fn answers_and_votes_round_trip() {
        type Reply = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
        let replies: Vec<Reply> = vec![
            Ok(AppendEntriesResponse::Success),
            Ok(AppendEntriesResponse::Conflict),
            Ok(AppendEntriesResponse::HigherVote(Vote::new(4, 2))),
            Ok(AppendEntriesResponse::PartialSuccess(Some(LogId::new(
                CommittedLeaderId::new(3, 1),
                9,
            )))),
        ];
        for encoding in [Encoding::Postcard, Encoding::Json] {
            for reply in &replies {
                assert_eq!(&round_trip(encoding, reply), reply, "{encoding:?}");
            }
            let vote = VoteRequest::<NodeId>::new(
                Vote::new(5, 3),
                Some(LogId::new(CommittedLeaderId::new(4, 1), 77)),
            );
            assert_eq!(round_trip(encoding, &vote), vote, "{encoding:?}");
        }
    }

    /// Bytes that are not a request of the type are refused, not misread.
    #[test]
    fn a_truncated_or_foreign_body_is_refused() {
        let request = VoteRequest::<NodeId>::new(Vote::new(5, 3), None);
        let bytes = Encoding::Postcard.encode(&request).expect("encodes");
        let cut: Result<VoteRequest<NodeId>, _> =
            Encoding::Postcard.decode(&bytes[..bytes.len() - 1]);
        assert!(cut.is_err(), "a cut body");
        let json: Result<VoteRequest<NodeId>, _> = Encoding::Postcard.decode(b"{\"vote\":1}");
        assert!(json.is_err(), "JSON read as postcard");
    }

    #[test]
    fn the_content_type_names_the_encoding() {
        let cases = [
            (Some("application/x-postcard"), Some(Encoding::Postcard)),
            (Some("application/json"), Some(Encoding::Json)),
            (
                Some("application/json; charset=utf-8"),
                Some(Encoding::Json),
            ),
            (Some("text/plain"), None),
            (None, None),
        ];
        for (header, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(header) = header {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(header));
            }
            assert_eq!(Encoding::of(&headers), expected, "{header:?}");
        }
    }
}
