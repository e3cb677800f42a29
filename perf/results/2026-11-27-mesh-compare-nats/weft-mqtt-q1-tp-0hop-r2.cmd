weft bench --protocol mqtt --server 127.0.0.1:60111 --sub-server 127.0.0.1:60111 --subject bench/x --qos 1 --msgs 500000 --size 64 --pin-cores 1 --quiet-ms 3000
