//! doin-plugins (in progress)
