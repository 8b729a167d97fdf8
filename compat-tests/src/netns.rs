//! A private network for a cluster test: one network namespace per node, each joined by
//! a veth pair to a bridge in the test's own namespace, so the test (on the bridge's
//! address) reaches every node while the nodes' traffic to each other can be cut and
//! healed. A cut is a blackhole route on both sides: no module beyond the kernel's
//! bridge and veth drivers is needed (no iptables, no tc actions). Needs CAP_NET_ADMIN
//! (root) and the `ip` command (iproute2, installed by scripts/install-deps.sh).

use std::process::Command;

/// Node `i` (1-based) has address `<prefix>.<i>`, the bridge `<prefix>.254`.
pub struct Network {
    bridge: String,
    /// Namespace names, node 1 first.
    namespaces: Vec<String>,
    /// The /24's first three octets, e.g. `10.201.37`.
    prefix: String,
}

/// Runs `ip` with `args`; the error names the command and its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Network {
    /// Creates the bridge and `nodes` namespaces, each with its address and loopback up.
    /// Names and the subnet derive from the process id, so concurrent test processes
    /// do not collide; a failed set-up removes what it made.
    pub fn create(nodes: usize) -> Result<Network, String> {
        assert!((1..=8).contains(&nodes), "1..=8 nodes");
        let pid = std::process::id();
        let network = Network {
            bridge: format!("mrb{pid}"),
            namespaces: (1..=nodes).map(|i| format!("mrn{pid}-{i}")).collect(),
            prefix: format!("10.{}.{}", 128 + (pid / 256) % 64, pid % 256),
        };
        network
            .set_up()
            .map_err(|e| format!("{e} (the network partition test needs root or CAP_NET_ADMIN)"))?;
        Ok(network)
    }

    fn set_up(&self) -> Result<(), String> {
        let bridge = self.bridge.as_str();
        ip(&["link", "add", bridge, "type", "bridge"])?;
        ip(&["link", "set", bridge, "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", self.prefix),
            "dev",
            bridge,
        ])?;
        for (i, ns) in self.namespaces.iter().enumerate() {
            let node = i + 1;
            // Interface names are at most 15 bytes: the pid keeps them unique.
            let outside = format!("{bridge}h{node}");
            let inside = format!("{bridge}n{node}");
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", ns])?;
            ip(&["link", "set", &outside, "master", bridge, "up"])?;
            let address = format!("{}/24", self.host(node as i32));
            ip(&["-n", ns, "addr", "add", &address, "dev", &inside])?;
            ip(&["-n", ns, "link", "set", &inside, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Node `id`'s address (ids are 1-based).
    pub fn host(&self, id: i32) -> String {
        format!("{}.{id}", self.prefix)
    }

    /// Node `id`'s namespace, for `ip netns exec`.
    pub fn namespace(&self, id: i32) -> &str {
        &self.namespaces[usize::try_from(id - 1).expect("node ids start at 1")]
    }

    pub fn nodes(&self) -> i32 {
        self.namespaces.len() as i32
    }

    /// Cuts node `id` off from every other node, both ways; the test still reaches it.
    pub fn isolate(&self, id: i32) {
        self.set_cut(id, "add").expect("isolate node");
    }

    /// Undoes `isolate(id)`.
    pub fn heal(&self, id: i32) {
        self.set_cut(id, "del").expect("heal node");
    }

    fn set_cut(&self, id: i32, action: &str) -> Result<(), String> {
        for other in (1..=self.nodes()).filter(|other| *other != id) {
            ip(&[
                "-n",
                self.namespace(id),
                "route",
                action,
                "blackhole",
                &format!("{}/32", self.host(other)),
            ])?;
            ip(&[
                "-n",
                self.namespace(other),
                "route",
                action,
                "blackhole",
                &format!("{}/32", self.host(id)),
            ])?;
        }
        Ok(())
    }
}

impl Drop for Network {
    /// Deleting a namespace deletes its veth end and so the pair; then the bridge.
    /// Processes still inside keep their namespace alive, so drop the cluster first.
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
