weft bench --protocol mqtt --server 127.0.0.1:60111 --sub-server 127.0.0.1:60111 --subject bench/x --qos 0 --rate 10000 --duration 5 --size 64 --pin-cores 1 --quiet-ms 3000
