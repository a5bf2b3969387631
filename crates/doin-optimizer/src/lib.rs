//! doin-optimizer (in progress)
