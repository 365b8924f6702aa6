#!/usr/bin/env python3
# Generates the Click configurations benches/click_ip_compare.sh runs: the
# same 64-byte UDP frame, 1002 routes and IPFilter rules that
# benches/pipeline.rs builds (same generator, same seeds).
#   python3 click_ip_configs.py route|filter100|filter1 PACKETS
import sys
M=(1<<64)-1
def lcg(x):
    x=(x*6364136223846793005+1442695040888963407)&M
    return x,(x>>33)&0xffffffff
def routes():
    x=7; r=[]; seen=set()
    while len(seen)<1000:
        x,v=lcg(x); ln=8+v%17
        x,a=lcg(x); a&=(0xffffffff<<(32-ln))&0xffffffff
        if a>>24==10 or a==0: a^=0x40000000
        if (a,ln) in seen: continue
        seen.add((a,ln))
        r.append("%d.%d.%d.%d/%d 1"%(a>>24,(a>>16)&255,(a>>8)&255,a&255,ln))
    r+=["10.0.0.0/24 10.0.0.254 0","0.0.0.0/0 1"]
    return ", ".join(r)
def rules(n):
    x=11; r=[]
    for _ in range(n):
        x,a=lcg(x); x,b=lcg(x); x,p=lcg(x)
        r.append("deny src net %d.%d.0.0/16 and udp dst port %d"%(20+a%200,b%256,1+p%5000))
    return ", ".join(r)+(", " if r else "")
# default_frame(64)
f=bytearray(64); f[0:6]=bytes([2,0,0,0,0,2]); f[6:12]=bytes([2,0,0,0,0,1]); f[12:14]=b'\x08\x00'
ip=bytearray(20); ip[0]=0x45; ip[2:4]=(50).to_bytes(2,'big'); ip[8]=64; ip[9]=17; ip[12:16]=bytes([10,0,0,1]); ip[16:20]=bytes([10,0,0,2])
s=sum(int.from_bytes(ip[i:i+2],'big') for i in range(0,20,2))
while s>0xffff: s=(s&0xffff)+(s>>16)
ip[10:12]=((~s)&0xffff).to_bytes(2,'big'); f[14:34]=ip
f[34:36]=(1234).to_bytes(2,'big'); f[36:38]=(5678).to_bytes(2,'big'); f[38:40]=(30).to_bytes(2,'big')
data="\\<"+f.hex()+">"
N=sys.argv[2]
if sys.argv[1]=="route":
    print(f"InfiniteSource(DATA {data}, LIMIT {N}, BURST 32, STOP true) -> Strip(14) -> CheckIPHeader -> GetIPAddress(16) -> rt :: RadixIPLookup({routes()}); rt[0] -> DecIPTTL -> EtherEncap(0x0800, 1:1:1:1:1:1, 2:2:2:2:2:2) -> out :: Counter -> Discard; rt[1] -> Discard;")
else:
    n=int(sys.argv[1][6:])
    print(f"InfiniteSource(DATA {data}, LIMIT {N}, BURST 32, STOP true) -> Strip(14) -> CheckIPHeader -> IPFilter({rules(n)}allow all) -> out :: Counter -> Discard;")
