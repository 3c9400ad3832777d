//! Helpers shared by the JSON profiles.
