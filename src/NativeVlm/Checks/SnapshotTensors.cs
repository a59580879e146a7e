using NativeVlm.Models;
using NativeVlm.Nn;

namespace NativeVlm.Checks;

/// <summary>One tensor a snapshot holds for a config, with the shape the config implies.</summary>
public sealed record ExpectedTensor(string Name, long[] Shape)
{
    public long ElementCount => Shape.Aggregate(1L, (product, dim) => product * dim);

    public string Component => SnapshotTensors.ComponentOf(Name);
}

/// <summary>
/// Every tensor of the snapshot transformers would save for an Idefics3 config, grouped by the part of
/// the model it belongs to; computed from config.json alone, without building a tensor.
/// </summary>
public static class SnapshotTensors
{
    public const string VisionComponent = "vision tower";
    public const string ConnectorComponent = "connector";
    public const string EmbeddingsComponent = "token embeddings";
    public const string TextComponent = "text decoder";
    public const string LmHeadComponent = "LM head";
    public const string LmHeadWeight = "lm_head.weight";
    public const string EmbedTokensWeight = "model.text_model.embed_tokens.weight";

    /// <summary>The components in model order.</summary>
    public static IReadOnlyList<string> Components { get; } =
        [VisionComponent, ConnectorComponent, EmbeddingsComponent, TextComponent, LmHeadComponent];

    /// <summary>The part of the model a module or tensor belongs to, by its Hugging Face name.</summary>
    public static string ComponentOf(string name) => name switch
    {
        _ when name.StartsWith("model.vision_model.", StringComparison.Ordinal) => VisionComponent,
        _ when name.StartsWith("model.connector.", StringComparison.Ordinal) => ConnectorComponent,
        _ when name.StartsWith("model.text_model.embed_tokens.", StringComparison.Ordinal) => EmbeddingsComponent,
        _ when name.StartsWith("model.text_model.", StringComparison.Ordinal) => TextComponent,
        _ => LmHeadComponent,
    };

    /// <summary>
    /// The tensors in component order, with the shapes the config implies: the Linear modules as
    /// Idefics3Model.LinearShapes lists them, plus the embeddings and norms the model's Load methods request;
    /// no lm_head.weight when the embeddings are tied (save_pretrained drops the tied copy).
    /// </summary>
    public static IReadOnlyList<ExpectedTensor> Of(Idefics3Config config)
    {
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        var tensors = new List<ExpectedTensor>
        {
            new("model.vision_model.embeddings.patch_embedding.weight", [v.HiddenSize, v.NumChannels, v.PatchSize, v.PatchSize]),
            new("model.vision_model.embeddings.patch_embedding.bias", [v.HiddenSize]),
            new("model.vision_model.embeddings.position_embedding.weight", [v.NumPatches, v.HiddenSize]),
        };
        IEnumerable<string> visionNorms = Enumerable.Range(0, v.NumHiddenLayers)
            .SelectMany(i => new[] { $"model.vision_model.encoder.layers.{i}.layer_norm1", $"model.vision_model.encoder.layers.{i}.layer_norm2" })
            .Append("model.vision_model.post_layernorm");
        tensors.AddRange(visionNorms.SelectMany(norm => new ExpectedTensor[] { new($"{norm}.weight", [v.HiddenSize]), new($"{norm}.bias", [v.HiddenSize]) }));
        foreach (LinearShape linear in Idefics3Model.LinearShapes(config))
        {
            tensors.Add(new ExpectedTensor($"{linear.Name}.weight", [linear.OutFeatures, linear.InFeatures]));
            if (linear.HasBias)
            {
                tensors.Add(new ExpectedTensor($"{linear.Name}.bias", [linear.OutFeatures]));
            }
        }
        tensors.Add(new ExpectedTensor(EmbedTokensWeight, [t.VocabSize, t.HiddenSize]));
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            string layer = $"model.text_model.layers.{i}";
            tensors.Add(new ExpectedTensor($"{layer}.input_layernorm.weight", [t.HiddenSize]));
            tensors.Add(new ExpectedTensor($"{layer}.post_attention_layernorm.weight", [t.HiddenSize]));
            if (t.HasQkNorm)
            {
                tensors.Add(new ExpectedTensor($"{layer}.self_attn.q_norm.weight", [t.HeadDim]));
                tensors.Add(new ExpectedTensor($"{layer}.self_attn.k_norm.weight", [t.HeadDim]));
            }
        }
        tensors.Add(new ExpectedTensor("model.text_model.norm.weight", [t.HiddenSize]));
        if (!config.TieWordEmbeddings)
        {
            tensors.Add(new ExpectedTensor(LmHeadWeight, [t.VocabSize, t.HiddenSize]));
        }
        return tensors.OrderBy(tensor => IndexOf(tensor.Component)).ToList();
    }

    private static int IndexOf(string component) => Components.ToList().IndexOf(component);
}
