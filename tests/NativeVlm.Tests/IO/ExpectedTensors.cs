using NativeVlm.Models;

namespace NativeVlm.Tests;

/// <summary>
/// Every tensor that transformers' Idefics3ForConditionalGeneration.save_pretrained writes, with its
/// shape, derived from the config alone (key names as the fixtures' READMEs list them; lm_head is
/// absent when tied, as save_pretrained drops tied copies).
/// </summary>
internal static class ExpectedTensors
{
    public static Dictionary<string, long[]> Of(Idefics3Config config)
    {
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        var shapes = new Dictionary<string, long[]>
        {
            ["model.vision_model.embeddings.patch_embedding.weight"] = [v.HiddenSize, v.NumChannels, v.PatchSize, v.PatchSize],
            ["model.vision_model.embeddings.patch_embedding.bias"] = [v.HiddenSize],
            ["model.vision_model.embeddings.position_embedding.weight"] = [v.NumPatches, v.HiddenSize],
        };
        for (int layer = 0; layer < v.NumHiddenLayers; layer++)
        {
            string prefix = $"model.vision_model.encoder.layers.{layer}.";
            foreach (string projection in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                shapes[$"{prefix}self_attn.{projection}.weight"] = [v.HiddenSize, v.HiddenSize];
                shapes[$"{prefix}self_attn.{projection}.bias"] = [v.HiddenSize];
            }
            foreach (string norm in new[] { "layer_norm1", "layer_norm2" })
            {
                shapes[$"{prefix}{norm}.weight"] = [v.HiddenSize];
                shapes[$"{prefix}{norm}.bias"] = [v.HiddenSize];
            }
            shapes[$"{prefix}mlp.fc1.weight"] = [v.IntermediateSize, v.HiddenSize];
            shapes[$"{prefix}mlp.fc1.bias"] = [v.IntermediateSize];
            shapes[$"{prefix}mlp.fc2.weight"] = [v.HiddenSize, v.IntermediateSize];
            shapes[$"{prefix}mlp.fc2.bias"] = [v.HiddenSize];
        }
        shapes["model.vision_model.post_layernorm.weight"] = [v.HiddenSize];
        shapes["model.vision_model.post_layernorm.bias"] = [v.HiddenSize];

        shapes["model.connector.modality_projection.proj.weight"] = [t.HiddenSize, config.ConnectorInputSize];

        shapes["model.text_model.embed_tokens.weight"] = [t.VocabSize, t.HiddenSize];
        long queryWidth = (long)t.NumAttentionHeads * t.HeadDim, keyValueWidth = (long)t.NumKeyValueHeads * t.HeadDim;
        for (int layer = 0; layer < t.NumHiddenLayers; layer++)
        {
            string prefix = $"model.text_model.layers.{layer}.";
            shapes[$"{prefix}self_attn.q_proj.weight"] = [queryWidth, t.HiddenSize];
            shapes[$"{prefix}self_attn.k_proj.weight"] = [keyValueWidth, t.HiddenSize];
            shapes[$"{prefix}self_attn.v_proj.weight"] = [keyValueWidth, t.HiddenSize];
            shapes[$"{prefix}self_attn.o_proj.weight"] = [t.HiddenSize, queryWidth];
            if (t.HasQkNorm)
            {
                shapes[$"{prefix}self_attn.q_norm.weight"] = [t.HeadDim];
                shapes[$"{prefix}self_attn.k_norm.weight"] = [t.HeadDim];
            }
            shapes[$"{prefix}mlp.gate_proj.weight"] = [t.IntermediateSize, t.HiddenSize];
            shapes[$"{prefix}mlp.up_proj.weight"] = [t.IntermediateSize, t.HiddenSize];
            shapes[$"{prefix}mlp.down_proj.weight"] = [t.HiddenSize, t.IntermediateSize];
            shapes[$"{prefix}input_layernorm.weight"] = [t.HiddenSize];
            shapes[$"{prefix}post_attention_layernorm.weight"] = [t.HiddenSize];
        }
        shapes["model.text_model.norm.weight"] = [t.HiddenSize];
        if (!config.TieWordEmbeddings)
        {
            shapes["lm_head.weight"] = [t.VocabSize, t.HiddenSize];
        }
        return shapes;
    }
}
