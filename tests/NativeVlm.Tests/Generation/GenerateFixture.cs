using System.Text.Json;
using NativeVlm.IO;
using NativeVlm.Models;

namespace NativeVlm.Tests.Generation;

/// <summary>
/// A generate fixture (generate-greedy, generate-greedy-qwen3) as its README describes it: generate.json
/// names the base model folder, the generate kwargs, the prompts and the eos ids of each case; inputs.safetensors
/// holds prompt.i.* and batch.*; outputs.safetensors the sequences, generated ids and step logits of
/// single.i, batch and eos_stop, and the full_forward case. Everything is read from the files.
/// </summary>
internal sealed class GenerateFixture
{
    public GenerateFixture(string name)
    {
        Name = name;
        using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(Fixtures.Path(name, "generate.json")));
        JsonElement root = json.RootElement;
        ModelDir = Path.GetFullPath(Fixtures.Path(name, root.GetProperty("base").GetString()!));
        JsonElement kwargs = root.GetProperty("generate_kwargs");
        MaxNewTokens = kwargs.GetProperty("max_new_tokens").GetInt32();
        PadTokenId = kwargs.GetProperty("pad_token_id").GetInt32();
        PromptCount = root.GetProperty("prompts").GetArrayLength();
        NeverProducedEos = root.GetProperty("eos_token_id_never_produced").GetInt32();
        JsonElement eosStop = root.GetProperty("eos_stop");
        EosStopPrompt = eosStop.GetProperty("prompt").GetInt32();
        EosStopToken = eosStop.GetProperty("eos_token_id").GetInt32();
        FullForwardPrompt = root.GetProperty("full_forward").GetProperty("prompt").GetInt32();
    }

    public string Name { get; }

    /// <summary>The model the fixture was generated with (tiny-idefics3 or tiny-qwen3-smvl).</summary>
    public string ModelDir { get; }

    public int MaxNewTokens { get; }

    public int PadTokenId { get; }

    public int PromptCount { get; }

    /// <summary>The eos id of the single and batch cases, which no run produces.</summary>
    public int NeverProducedEos { get; }

    public int EosStopPrompt { get; }

    public int EosStopToken { get; }

    public int FullForwardPrompt { get; }

    public string InputsPath => Fixtures.Path(Name, "inputs.safetensors");

    public string OutputsPath => Fixtures.Path(Name, "outputs.safetensors");

    /// <summary>Every generated case: (output prefix, input prefix, eos id).</summary>
    public IEnumerable<(string Case, string Inputs, int Eos)> Cases =>
        Enumerable.Range(0, PromptCount).Select(i => ($"single.{i}", $"prompt.{i}.", NeverProducedEos))
            .Append(("batch", "batch.", NeverProducedEos))
            .Append(("eos_stop", $"prompt.{EosStopPrompt}.", EosStopToken));

    public Idefics3Inputs ReadInputs(string prefix)
    {
        using SafeTensorsReader file = SafeTensorsReader.Open(InputsPath);
        return Idefics3Inputs.Read(file, prefix);
    }

    /// <summary>The fixture names as theory rows.</summary>
    public static Xunit.TheoryData<string> Names => new() { "generate-greedy", "generate-greedy-qwen3" };
}
