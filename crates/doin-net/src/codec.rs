//! The sync protocol's wire format: one length-prefixed, versioned message each way
//! (doin-core's canonical encoding of [`SyncRequest`] and [`SyncResponse`]).
//!
//! Both directions are bounded before anything is allocated: a request is small, a response
//! at most one batch of blocks or one parameter blob. A peer announcing more is cut off with
//! an `InvalidData` error, which fails that one request.

use std::io;

use doin_core::encode::{decode_versioned, encode_versioned};
use doin_core::wire::{SyncRequest, SyncResponse, MAX_PARAMS_BYTES};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

/// Largest encoded request.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest encoded response: a parameter blob and its framing (a block batch is smaller).
pub const MAX_RESPONSE_BYTES: usize = MAX_PARAMS_BYTES + 1024 * 1024;

/// The codec of the `/doin/<chain>/sync/1` protocol.
#[derive(Debug, Clone, Default)]
pub struct SyncCodec;

/// Reads a `u32` little-endian length, then that many bytes, refusing lengths over `max`.
async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
    max: usize,
) -> io::Result<()> {
    if bytes.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes exceeds the limit of {max}",
                bytes.len()
            ),
        ));
    }
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
    io.write_all(&len.to_le_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_versioned(&read_frame(io, MAX_REQUEST_BYTES).await?).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_versioned(&read_frame(io, MAX_RESPONSE_BYTES).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_versioned(&req), MAX_REQUEST_BYTES).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_versioned(&res), MAX_RESPONSE_BYTES).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use doin_core::hash::Hash32;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/doin/t/sync/1")
    }

    #[tokio::test]
    async fn requests_and_responses_round_trip() {
        let mut codec = SyncCodec;
        let mut buf = Cursor::new(Vec::new());
        let request = SyncRequest::Headers {
            from: 7,
            count: 100,
        };
        codec
            .write_request(&protocol(), &mut buf, request.clone())
            .await
            .unwrap();
        buf.set_position(0);
        assert_eq!(
            codec.read_request(&protocol(), &mut buf).await.unwrap(),
            request
        );
        let mut buf = Cursor::new(Vec::new());
        let response = SyncResponse::Params(Some(vec![1, 2, 3]));
        codec
            .write_response(&protocol(), &mut buf, response.clone())
            .await
            .unwrap();
        buf.set_position(0);
        assert_eq!(
            codec.read_response(&protocol(), &mut buf).await.unwrap(),
            response
        );
    }

    #[tokio::test]
    async fn oversized_or_malformed_frames_are_refused_before_allocating() {
        let mut codec = SyncCodec;
        // A length prefix of 4 GiB: refused from the prefix alone.
        let mut huge = Cursor::new(u32::MAX.to_le_bytes().to_vec());
        let err = codec
            .read_response(&protocol(), &mut huge)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut big_request = Cursor::new(((MAX_REQUEST_BYTES + 1) as u32).to_le_bytes().to_vec());
        assert!(codec
            .read_request(&protocol(), &mut big_request)
            .await
            .is_err());
        // A well-framed body that does not decode.
        let mut bytes = 3u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[9, 9, 9]);
        let err = codec
            .read_request(&protocol(), &mut Cursor::new(bytes))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A truncated body.
        let mut bytes = 10u32.to_le_bytes().to_vec();
        bytes.push(1);
        assert!(codec
            .read_request(&protocol(), &mut Cursor::new(bytes))
            .await
            .is_err());
        let _ = Hash32([0; 32]);
    }
}
