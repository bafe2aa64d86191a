"""tailnet: a real tailnet on one machine, with no network link anywhere.

Three network namespaces, each with only `lo` and no link between them:

    A (the caller's own, private)      H (new)                    B (new)
    tailscaled A                       headscale                  tailscaled B, subnet router
      userspace, --accept-routes         embedded DERP + STUN       for 192.0.2.0/24 and
      SOCKS5 + HTTP proxy on             MagicDNS: tailnet.test     2001:db8:99::/64
      127.0.0.1:<a_proxy_port>           split DNS corp.example     web 192.0.2.10:80, [2001:db8:99::10]:80
    socat 127.0.0.1:P --+                  -> 192.0.2.53            PostgreSQL on the same addresses, :5432
                        |              socat UNIX -> 127.0.0.1:P    DNS 192.0.2.53:53 (UDP+TCP)
                        +--> UNIX socket (a path: crosses       <-- socat 127.0.0.1:P
                             namespaces) ---------------------->

Both tailscaleds reach headscale (control plane and DERP) at the same
http://127.0.0.1:P in their own namespace; the only thing that crosses
namespaces is that path-bound UNIX socket. WireGuard between A and B travels
in DERP frames (tailscaled runs with TS_DEBUG_USE_DERP_HTTP=1 and
TS_DEBUG_ALWAYS_USE_DERP=1: no UDP socket at all). Nothing is ever sent to
an address outside these namespaces; the subnet behind B uses documentation
prefixes only.

Requirements: root, a private network namespace with only lo for the caller
(scripts/test's `unshare --net --mount`), /opt/tfgo/bin/{tailscaled,tailscale,
headscale} (scripts/install-deps; $TFGO_BIN overrides the directory), socat,
PostgreSQL, psql. missing_requirements() lists what is missing.

Usage (plain Python, no pytest):

    from tailnet import Tailnet
    with Tailnet(workdir, log=print) as tn:
        ...

Tailnet(workdir, free_port=pick_port, verbose_a=1, verbose_b=2, timeout=120, log=None)
    workdir keeps logs (workdir/logs/*.log), state dirs, headscale's config and
    database, and the servers' records; sockets and PostgreSQL's data live in a
    short /tmp/tailnet-* directory removed at close(). free_port picks a free
    TCP port in A (pass helpers.free_port under pytest). timeout bounds every
    wait (seconds). log receives progress lines.
    start() / close() or `with`: close() kills every process, removes both
    namespaces, and raises HarnessError if anything survived.

Attributes
  a_socket, b_socket        tailscaled A's / B's LocalAPI socket path
  a_proxy                   "127.0.0.1:PORT": A's SOCKS5 and HTTP proxy; a_proxy_port
  a_ips, b_ips              tailnet addresses (v4, v6)
  a_dnsname, b_dnsname      MagicDNS FQDNs with the trailing dot ("tailnet-b.tailnet.test.")
  magicdns_suffix           "tailnet.test"; magicdns_base the configured base domain
  hostname_a, hostname_b    "tailnet-a", "tailnet-b"
  control_url               "http://127.0.0.1:P" (headscale, in every namespace)
  route_v4, route_v6, routes "192.0.2.0/24", "2001:db8:99::/64", both
  web_v4, web_v6            ("192.0.2.10", 80), ("2001:db8:99::10", 80)
  web_self_port             80: the web server also listens on B's loopback, which is
                            where tailscaled B hands connections to B's own tailnet
                            addresses (so b_dnsname:80 reaches it)
  dns_v4                    ("192.0.2.53", 53)
  unrouted_v4               "198.51.100.7": carried by nobody
  split_domain, db_name     "corp.example", "db.corp.example" (A 192.0.2.10, AAAA 2001:db8:99::10)
  pg                        Postgres: host, host_v6, port, user, password, dbname,
                            socket_dir, dsn(host=None, port=None, dbname=None, ...)
  approved                  the routes last approved (empty after revoke_routes())
  b_node_id                 B's headscale node id
  startup_seconds, timings  how long start() took, in total and per phase (cumulative)
  ns_b, ns_h                NetNS objects (run(argv), pids(), listening(port), remains())
  hs_port, a_proxy_port     headscale's port (the same in A, B and H), A's proxy port
  sock_dir                  the /tmp/tailnet-* directory of sockets and PostgreSQL data

Methods
  pg_dsn(host=None, **kw)   libpq URI for B's PostgreSQL (IPv6 hosts bracketed)
  web_hits()                requests B's web server answered: dicts client, client_port,
                            local, local_port, method, path, host
  dns_queries()             questions B's DNS server got: dicts name, type, transport, client
  approve_routes(routes=None)  approve in headscale (default both); waits until A's
                            LocalAPI status shows exactly them as B's PrimaryRoutes/AllowedIPs
  revoke_routes()           remove every approval; waits until A no longer sees them
  wait_routes_seen(routes)  the waiting half of the two above
  headscale_routes()        (available, approved, serving) as headscale lists them
  restore()                 A running and both routes approved again (no-op if so)
  stop_a() / start_a()      stop / restart tailscaled A (same state dir, socket, proxy
                            port); start_a waits for Running, routes and a ping to B
  ping_b(kind="TSMP")       one LocalAPI ping from A to B; wait_path() until one succeeds
  pids()                    every process started (namespace holders included)
  a_log(), b_log(), headscale_log(), logs()   process output (logs(): every process's tail)
  in_b(argv, **kw), in_h(argv, **kw)          subprocess.run inside B / H
  localapi_a(path, method="GET", body=None)   A's LocalAPI (path under /localapi/v0/),
  localapi_b(...)                             parsed JSON
  status_a(), peer_b()      A's status; B's PeerStatus in it
  dns_query_a(name, qtype="A")  A's own resolver via LocalAPI dns-query: the decoded
                            answer (rcode, answers, addresses, resolvers)
  tailscale_a(*args), tailscale_b(*args)      the tailscale CLI against A / B
  headscale(*args, json_output=True)          the headscale CLI (-o json, parsed)
  preauth_key(ephemeral=False), node_env(home)  for another node joining from A
  node(hostname), node_routes(node_id)        headscale's record of a node, its routes

By hand: `cd tests/integration && sudo /usr/bin/python3 -m tailnet [COMMAND...]`
(see __main__.py) brings it up in a namespace of its own and prints TAILNET_*
variables; COMMAND runs in A with them.

Module functions: missing_requirements(), in_private_netns(), localapi(sock, path),
write_proxychains_conf(path, "127.0.0.1:PORT"), wait_for(pred, timeout, what).

How it works (facts read in tailscale v1.100.0 and headscale v0.29.2 source)

- DERP: headscale's embedded region (999, code "harness") takes HostName and
  DERPPort from server_url, so the DERP map says 127.0.0.1:P; IPv4 127.0.0.1
  and IPv6 "none" make tailscaled dial only tcp4 127.0.0.1:P. With
  TS_DEBUG_USE_DERP_HTTP=1 derphttp uses http://127.0.0.1:P/derp (no TLS),
  which is the bridge.
- UDP: TS_DEBUG_ALWAYS_USE_DERP=1 gives magicsock no UDP socket. Otherwise
  the only local endpoints would be 127.0.0.1/::1:port, and a disco ping
  to them lands in the sender's own namespace. So STUN (headscale listens on
  127.0.0.1:3478 in H) is not bridged: netcheck reports udp=false and the
  only region becomes home. Its HTTPS-latency and captive-portal probes go to
  127.0.0.1 in the prober's own namespace and fail there; probes by name fail
  at name resolution (no resolver is reachable from a namespace with only lo).
- TS_ASSUME_NETWORK_UP_FOR_TEST=1: with only lo the control client would
  think it is offline. TS_PANIC_IF_HIT_MAIN_CONTROL=1 guards against a
  real control server; proxy variables are removed from every environment.
- Split DNS: tailscaled's forwarder races UDP through the host stack (no
  route from A: fails at once) with TCP through its "user dial", which takes
  tailnet routes, so B's DNS server gets the question over TCP from B's own
  side (netstack dials it from B's namespace).
- Logs: B runs with TS_DEBUG_NETSTACK=1 and --verbose=2, so its log has
  "netstack: forwarding incoming connection to IP:PORT" for every TCP
  connection it forwards into the subnet; TS_DEBUG_LOG_RATE=all keeps
  tailscaled's log limiter from dropping repeats of that line.
- Processes: each starts in its own process group with PR_SET_PDEATHSIG
  (SIGKILL) set after any setns/setuid, so all die with the harness (the
  thread that started them, in fact: start the Tailnet from a long-lived
  thread). Namespaces are held by `sleep infinity` processes made with
  unshare(2) and joined with setns(2) on a descriptor of /proc/PID/ns/net.
"""

from .harness import (HarnessError, NetNS, Postgres, ProcessDied, Tailnet, in_private_netns,
                      localapi, missing_requirements, pick_port, wait_for,
                      write_proxychains_conf)

__all__ = ["HarnessError", "NetNS", "Postgres", "ProcessDied", "Tailnet", "in_private_netns",
           "localapi", "missing_requirements", "pick_port", "wait_for", "write_proxychains_conf"]
