using NativeVlm.Tensors;

namespace NativeVlm.Models;

/// <summary>
/// Receives named intermediate tensors of a forward pass, under the names the reference fixtures
/// use ("vision.embeddings", "vision.layer_output.N", "connector.image_hidden_states",
/// "text.hidden_states.N", "logits", …), so `compare` can check every stage. The tensor belongs
/// to the forward's scope: read it during the call.
/// </summary>
public delegate void Trace(string name, Tensor value);
