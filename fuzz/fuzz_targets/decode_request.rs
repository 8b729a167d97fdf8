//! The broker's request decoder over a frame body (what follows the 4-byte size prefix).
//! The input is tried as is (real clients' frames in the corpus decode unchanged), then with
//! its api key and version folded onto a pair the broker serves, so every supported
//! (key, version) decoder is reached whatever the first four bytes are.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;
use millrace::protocol::supported_versions;
use millrace::server::frame::decode_request;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(Bytes::copy_from_slice(data));
    if data.len() < 4 {
        return;
    }
    let served: Vec<(ApiKey, i16, i16)> = ApiKey::iter()
        .filter_map(|key| supported_versions(key).map(|range| (key, range.min, range.max)))
        .collect();
    let raw_key = u16::from_be_bytes([data[0], data[1]]) as usize;
    let raw_version = u16::from_be_bytes([data[2], data[3]]) as i32;
    let (key, min, max) = served[raw_key % served.len()];
    let version = min as i32 + raw_version % (max as i32 - min as i32 + 1);
    let mut frame = Vec::with_capacity(data.len());
    frame.extend_from_slice(&(key as i16).to_be_bytes());
    frame.extend_from_slice(&(version as i16).to_be_bytes());
    frame.extend_from_slice(&data[4..]);
    let _ = decode_request(Bytes::from(frame));
});
