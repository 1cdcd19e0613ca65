import contextlib, time, torch
from torch.profiler import profile, ProfilerActivity
from tinyeval.models import load_model
from tinyeval.adapters import AdapterConfig, attach
model, _ = load_model("/tmp/rand_model", dtype="bfloat16", device="cuda")
h = attach(model, AdapterConfig(params=13, svd_cache=False))
with torch.no_grad():
    h.state.v.fill_(0.01)
ids = torch.randint(0, model.config.vocab_size, (8, 256), device="cuda")
emb = model.get_input_embeddings()(ids).detach()
def step():
    x = emb.detach().requires_grad_(True)
    model(inputs_embeds=x, labels=ids).loss.backward()
for _ in range(3):
    step()
for name, ctx in [("adapted", contextlib.nullcontext), ("base", h.disabled)]:
    with ctx():
        step(); torch.cuda.synchronize(); t = time.perf_counter()
        for _ in range(3):
            step()
        torch.cuda.synchronize(); print(name, "ms/step", (time.perf_counter() - t) / 3 * 1e3, flush=True)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            step(); torch.cuda.synchronize()
    ka = p.key_averages()
    print(name, "kernels", sum(e.count for e in ka if e.device_type == torch.autograd.DeviceType.CUDA))
    print(ka.table(sort_by="self_cuda_time_total", row_limit=20))
    print(ka.table(sort_by="self_cpu_time_total", row_limit=20))
