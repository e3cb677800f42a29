weft bench --protocol nats --server 127.0.0.1:18902 --sub-server 127.0.0.1:18902 --subject bench.x --rate 10000 --duration 5 --size 64 --pin-cores 1 --quiet-ms 3000
