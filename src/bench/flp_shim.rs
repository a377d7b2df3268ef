//! TEMPORARY stand-in with the API of `farewell::flp` (in review on the serve
//! branch); replaced by it when that merges. Only what the bench needs.
#![allow(dead_code)]

pub const DEFAULT_MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug)]
pub enum Reason {
    Quit,
    BadHandshake,
    Shutdown,
}

pub fn goodbye(reason: Reason) -> &'static [u8] {
    match reason {
        Reason::Quit => b"BYE quit\n",
        Reason::BadHandshake => b"BYE bad-handshake\n",
        Reason::Shutdown => b"BYE shutdown\n",
    }
}

pub struct Session {
    established: bool,
    partial: Vec<u8>,
}

impl Session {
    pub fn new(_max_line: usize) -> Session {
        Session {
            established: false,
            partial: Vec::new(),
        }
    }
    pub fn is_established(&self) -> bool {
        self.established
    }
    pub fn feed(&mut self, input: &[u8], reply: &mut Vec<u8>) -> Option<Reason> {
        self.partial.extend_from_slice(input);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let line = &line[..line.len() - 1];
            if !self.established {
                let Some(id) = line.strip_prefix(b"HELLO ") else {
                    return Some(Reason::BadHandshake);
                };
                reply.extend_from_slice(b"WELCOME ");
                reply.extend_from_slice(id);
                reply.push(b'\n');
                self.established = true;
            } else if line == b"QUIT" {
                return Some(Reason::Quit);
            } else {
                reply.extend_from_slice(line);
                reply.push(b'\n');
            }
        }
        None
    }
}
