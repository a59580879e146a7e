using NativeVlm.Batches;
using NativeVlm.Demo;
using NativeVlm.Generation;
using NativeVlm.Models;
using NativeVlm.Tensors;

namespace NativeVlm.Tests.Generation;

/// <summary>The demo snapshot written to a temporary folder, loaded as a model and a processor.</summary>
internal sealed class DemoModel : IDisposable
{
    private readonly TempDirectory _dir;

    private DemoModel(TempDirectory dir, Context context, Idefics3Model model, VlmProcessor processor)
    {
        (_dir, Context, Model, Processor) = (dir, context, model, processor);
        Prompts = new GenerationPrompts(processor);
    }

    public Context Context { get; }

    public Idefics3Model Model { get; }

    public VlmProcessor Processor { get; }

    public GenerationPrompts Prompts { get; }

    public static DemoModel Create(TempDirectory dir)
    {
        DemoSnapshot.Create(dir.Path("model"), seed: 0);
        Context context = Context.Create(DeviceKind.Cpu);
        return new DemoModel(dir, context, Idefics3Model.Load(dir.Path("model"), context), VlmProcessor.Load(dir.Path("model")));
    }

    /// <summary>A random shape picture as a PNG file in the folder; returns its path.</summary>
    public string WriteImage(int seed)
    {
        string path = _dir.Path($"shape-{seed}.png");
        File.WriteAllBytes(path, PngEncoder.EncodeRgb(ShapePicture.Random(new Random(seed)).Draw()));
        return path;
    }

    public void Dispose()
    {
        Model.Dispose();
        Context.Dispose();
    }
}
