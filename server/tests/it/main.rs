//! Integration tests: the real server over HTTP, like a user.

mod auth;
mod browser;
mod cli;
mod deliveries;
mod flows_api;
mod ingress;
mod multiprocess;
mod official;
mod procs;
mod reliability;
mod runs;
mod schedules;
mod security;
mod steps;
mod ui;
mod utils;
mod webdriver;
