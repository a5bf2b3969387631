//! doin-node (in progress)
