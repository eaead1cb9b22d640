mod apply;
mod bad_input;
mod ceremony;
mod dependencies;
mod drill;
mod mixed;
mod network;
mod scenarios;
mod security;
mod security_credentials;
mod security_input;
mod security_serve;
#[cfg(feature = "smartcards")]
mod smartcards;
mod tke;
mod untouched;
mod views;
mod witnesses;
