"""PyTorch's forward + backward at the bench's MiniLM size in evaluation and in training mode.

Why Forge's Fisher batch (evaluation mode) trails PyTorch by more than its training steps do
(docs/speed.md, "Why the rest is not there yet"): the same model, batch and threads as
`torch_reference.py --model minilm` (random init, batch 16 x seq 64, SDPA attention, 2 threads),
timing forward + cross-entropy + backward with model.eval() and model.train(), and the forward
alone. Prints the median of 5 timed iterations after one warm-up.

    /path/to/python xtask/bench/torch_modes.py
"""
import torch, time, transformers, torch.nn.functional as F
torch.set_num_threads(2)
torch.manual_seed(0)
config = transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2, num_labels=2)
model = transformers.AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa").float()
ids = torch.randint(0, 30522, (16, 64)); ids[:,0]=101
mask = torch.ones(16,64, dtype=torch.int64); labels = torch.randint(0,2,(16,))
def fb(train):
    model.train(train)
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(ids, attention_mask=mask).logits, labels)
    loss.backward()
def fwd(train):
    model.train(train)
    with torch.no_grad():
        model(ids, attention_mask=mask)
for name, f in [("fwd eval", lambda: fwd(False)), ("fwd+bwd eval", lambda: fb(False)), ("fwd+bwd train", lambda: fb(True)), ("fwd+bwd eval", lambda: fb(False))]:
    f()
    ts=[]
    for i in range(5):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    ts.sort(); print(name, round(ts[2]*1000,1), "ms")
