//! Generated gRPC types and services of `proto/tollgate/v1`.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("tollgate.v1");
/// The encoded descriptors of `tollgate.v1`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tollgate_descriptor");
