//! A raw MQTT 3.1.1 client over a plain TCP socket: CONNECT packets built
//! by hand, bytes written and read as they are (for malformed input).

use super::*;

/// A raw MQTT connection for what no well-behaved client does.
pub struct Raw {
    pub stream: TcpStream,
}

pub fn connect_packet(id: &str, keep_alive_s: u16, level: u8, clean: bool) -> Vec<u8> {
    connect_full(id, keep_alive_s, level, clean, None)
}

/// An MQTT 3.1.1 CONNECT with a will.
pub fn connect_packet_with_will(id: &str, keep_alive_s: u16, will: codec::Will<'_>) -> Vec<u8> {
    connect_full(id, keep_alive_s, 4, true, Some(will))
}

fn connect_full(
    id: &str,
    keep_alive_s: u16,
    level: u8,
    clean: bool,
    will: Option<codec::Will<'_>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(
        &codec::Packet::Connect(codec::Connect {
            protocol_name: codec::PROTOCOL_NAME,
            level,
            clean_session: clean,
            keep_alive_s,
            client_id: id,
            will,
            username: None,
            password: None,
        }),
        &mut out,
    );
    out
}

impl Raw {
    pub async fn open(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Opens and completes CONNECT/CONNACK.
    pub async fn connected(addr: SocketAddr, id: &str, keep_alive_s: u16) -> Raw {
        let mut raw = Raw::open(addr).await;
        raw.send(&connect_packet(id, keep_alive_s, 4, true)).await;
        assert_eq!(raw.read_exact(4).await, vec![0x20, 2, 0, 0]);
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send_packet(&mut self, p: &codec::Packet<'_>) {
        let mut out = Vec::new();
        codec::encode(p, &mut out);
        self.send(&out).await;
    }

    /// Reads one whole MQTT packet (3.1.1 or 5: same fixed header).
    pub async fn read_packet(&mut self) -> Vec<u8> {
        let mut head = self.read_exact(2).await;
        let mut len = usize::from(head[1] & 0x7f);
        let mut shift = 7;
        let mut byte = head[1];
        while byte & 0x80 != 0 {
            byte = self.read_exact(1).await[0];
            head.push(byte);
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
        }
        let body = self.read_exact(len).await;
        head.extend_from_slice(&body);
        head
    }

    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut buf))
            .await
            .expect("bytes in time")
            .expect("read");
        buf
    }

    /// True once the server has closed the connection (EOF or reset),
    /// discarding whatever it sent before; panics if it stays open for
    /// longer than `WAIT`.
    pub async fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => panic!("server kept the connection open"),
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// An MQTT 3.1.1 SUBSCRIBE (packet id 1) of one filter at `qos`.
pub fn subscribe_packet(filter: &str, qos: u8) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(
        &codec::Packet::Subscribe {
            packet_id: 1,
            filters: vec![(filter, qos)],
        },
        &mut out,
    );
    out
}
