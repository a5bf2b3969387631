//! doin-evaluator (in progress)
