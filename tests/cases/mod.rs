mod apply;
mod bad_input;
mod dependencies;
mod mixed;
mod network;
mod scenarios;
mod untouched;
mod views;
