"""``nftnet-cni``: a chained CNI plugin that gives CNI runtimes nftnet's firewall.

It runs after ``bridge`` (``ipMasq: false``) and an IPAM plugin such as ``host-local``: they make
the bridge, the veth and the addresses; nftnet-cni registers them with nftnet and publishes the
runtime's ``portMappings``, and passes the previous result on unchanged.

  spec.py     the specification's plumbing that needs no host: commands, environment,
              versions, error codes and JSON, the result (pure)
  request.py  the network config and prevResult, parsed into a ``Request`` (pure)
  engine.py   what the plugin needs from nftnet: the ``Engine`` protocol and its values (pure)
  plugin.py   the commands' bodies, each a call of the engine (pure)
  adapter.py  the Engine on nftnet's facade (nftnet.api): CNI's networks, attachments and
              port mappings as nftnet's owned networks, endpoints and -p texts
  main.py     the executable: environment, stdin, stdout, exit status; never a traceback
"""
