// Switchyard's AF_XDP redirect program: every frame that arrives on
// queue Q goes to the AF_XDP socket in slot Q of `xsks`, or up the
// kernel's stack (XDP_PASS) when no socket is in that slot.
//
// The object beside this file, xsk.o, is what the router loads (it is
// shipped, so that building Switchyard needs no BPF compiler). Rebuild it
// with Debian's clang 14 (`apt-get install clang`):
//
//   clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c xsk.c -o xsk.o
//   llvm-strip --strip-debug xsk.o       # keeps the BTF the loader needs
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

// bpf_redirect_map, helper 51 (include/uapi/linux/bpf.h).
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} xsks SEC(".maps");

SEC("xdp")
int switchyard_xsk(struct xdp_md *ctx)
{
    // The flags argument is the action when the slot is empty.
    return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
