//! Test helpers the element tests share: building an element from a
//! config string, pushing frames through a Harness, reading handlers.
