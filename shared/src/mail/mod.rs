//! Outgoing email.
