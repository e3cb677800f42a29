weft bench --protocol nats --server 127.0.0.1:18892 --sub-server 127.0.0.1:18902 --subject bench.x --msgs 500000 --size 64 --pin-cores 1 --quiet-ms 3000
